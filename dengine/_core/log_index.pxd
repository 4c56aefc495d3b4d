# cython: language_level=3
from libc.stdint cimport uint64_t


cdef class LogIndex:
    # The log is [snapshot_index + 1, snapshot_index + length]; the term of entry k (0-based
    # from the first held index) is buf[head + k]. Invariants: head + length <= cap;
    # snapshot_term <= buf[head] <= ... <= buf[head + length - 1] (terms never decrease);
    # snapshot_index + length <= MAX_U64.
    cdef uint64_t snap_index
    cdef uint64_t snap_term
    cdef uint64_t *buf
    cdef Py_ssize_t head
    cdef Py_ssize_t length
    cdef Py_ssize_t cap

    cdef int lookup(self, uint64_t index, uint64_t *term) noexcept
    cdef int reserve(self, Py_ssize_t extra) except -1
    cdef int append_u64(self, uint64_t term) except -1
    cdef object first_index_obj(self)
    cdef Py_ssize_t upper_bound(self, uint64_t term, Py_ssize_t n) noexcept
    cdef Py_ssize_t lower_bound(self, uint64_t term) noexcept
