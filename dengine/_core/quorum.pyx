# cython: language_level=3, binding=False
"""Quorum arithmetic, compiled; the reference is dengine._core.ref.quorum.

Theory of operation: the commit index of a config is the match index that a majority holds,
i.e. the ((n - 1) // 2)-th smallest of the voters' match indexes. The kernel reads each voter's
match index straight from the dict (C API), copies them to a small stack array (heap beyond
``_STACK_VOTERS`` voters), insertion-sorts it and picks that element. The reference instead
counts holders for every candidate, so the property tests compare two different algorithms.
A vote is a count of granted and rejected among the voters. An empty config places no
constraint: commit index MAX_U64, vote won; a joint config needs both halves (thesis §4.3).
"""

from cpython.dict cimport PyDict_CheckExact
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc

from dengine._core.u64 cimport DENGINE_MAX_U64, as_u64

cdef extern from "Python.h":
    ctypedef struct PyObject
    PyObject *PyDict_GetItemWithError(object, object) except? NULL

MAX_U64 = (1 << 64) - 1

VOTE_PENDING = VOTE_PENDING_C
VOTE_WON = VOTE_WON_C
VOTE_LOST = VOTE_LOST_C

cdef enum:
    _STACK_VOTERS = 16


cdef object _MISSING = object()


cdef inline object lookup(object mapping, object key, bint exact_dict, object default):
    """mapping.get(key, default), through the dict C API when ``mapping`` is a plain dict."""
    cdef PyObject *found
    if exact_dict:
        found = PyDict_GetItemWithError(mapping, key)
        if found == NULL:
            return default
        return <object>found
    return mapping.get(key, default)


cdef uint64_t commit_index_c(object voters, object match) except? 0xFFFFFFFFFFFFFFFF:
    cdef object seq = PySequence_Fast(voters, "voters must be a sequence of ids")
    cdef Py_ssize_t i, n = PySequence_Fast_GET_SIZE(seq)
    cdef uint64_t stack[_STACK_VOTERS]
    cdef uint64_t *vals = stack
    cdef uint64_t result
    cdef bint exact = PyDict_CheckExact(match)
    cdef object m
    if n == 0:
        return DENGINE_MAX_U64
    stack[0] = 0  # every slot below n is written below; this only quiets gcc
    if n > _STACK_VOTERS:
        vals = <uint64_t *>malloc(<size_t>n * sizeof(uint64_t))
        if vals == NULL:
            raise MemoryError()
    try:
        for i in range(n):
            m = lookup(match, <object>PySequence_Fast_GET_ITEM(seq, i), exact, _MISSING)
            vals[i] = 0 if m is _MISSING else as_u64(m, "match index")
        sort_u64(vals, n)
        result = vals[(n - 1) // 2]
    finally:
        if vals != stack:
            free(vals)
    return result


cdef int vote_result_c(object voters, object votes) except -1:
    cdef object seq = PySequence_Fast(voters, "voters must be a sequence of ids")
    cdef Py_ssize_t i, n = PySequence_Fast_GET_SIZE(seq)
    cdef Py_ssize_t need = n // 2 + 1, granted = 0, rejected = 0
    cdef PyObject *v
    cdef object true_obj = True, false_obj = False
    cdef PyObject *yes = <PyObject *>true_obj
    cdef PyObject *no = <PyObject *>false_obj
    cdef object got
    if n == 0:
        return VOTE_WON_C
    if PyDict_CheckExact(votes):
        # borrowed references straight from the dict: no get() call, no refcounting
        for i in range(n):
            v = PyDict_GetItemWithError(votes, <object>PySequence_Fast_GET_ITEM(seq, i))
            if v == yes:
                granted += 1
            elif v == no:
                rejected += 1
    else:
        for i in range(n):
            got = votes.get(<object>PySequence_Fast_GET_ITEM(seq, i))
            if got is True:
                granted += 1
            elif got is False:
                rejected += 1
    if granted >= need:
        return VOTE_WON_C
    if n - rejected < need:
        return VOTE_LOST_C
    return VOTE_PENDING_C


def commit_index(voters, match):
    """Largest index held by a majority of ``voters`` (a voter missing from ``match`` holds 0).

    MAX_U64 for an empty config.
    """
    return commit_index_c(voters, match)


def joint_commit_index(incoming, outgoing, match):
    """Commit index of a joint config: the smaller of the two majorities' indexes."""
    cdef uint64_t a = commit_index_c(incoming, match)
    cdef uint64_t b = commit_index_c(outgoing, match)
    return a if a < b else b


def vote_result(voters, votes):
    """VOTE_WON, VOTE_LOST or VOTE_PENDING for ``votes`` (id -> granted) over ``voters``.

    Votes from ids outside ``voters`` are ignored. An empty config wins.
    """
    return vote_result_c(voters, votes)


def joint_vote_result(incoming, outgoing, votes):
    """Outcome over a joint config: won when both halves won, lost when either lost."""
    cdef int a = vote_result_c(incoming, votes)
    cdef int b = vote_result_c(outgoing, votes)
    return combine_votes(a, b)
