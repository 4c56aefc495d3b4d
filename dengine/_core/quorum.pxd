# cython: language_level=3
from libc.stdint cimport uint64_t

# Outcome codes of a vote, as in the reference.
cdef enum:
    VOTE_PENDING_C = 0
    VOTE_WON_C = 1
    VOTE_LOST_C = 2


cdef inline void sort_u64(uint64_t *a, Py_ssize_t n) noexcept nogil:
    """Insertion sort, ascending: voter sets are small (3, 5, 7, 9)."""
    cdef Py_ssize_t i, j
    cdef uint64_t v
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


cdef inline int combine_votes(int a, int b) noexcept nogil:
    """Joint outcome: won when both won, lost when either lost, else pending."""
    if a == b:
        return a
    if a == VOTE_LOST_C or b == VOTE_LOST_C:
        return VOTE_LOST_C
    return VOTE_PENDING_C


cdef uint64_t commit_index_c(object voters, object match) except? 0xFFFFFFFFFFFFFFFF
cdef int vote_result_c(object voters, object votes) except -1
