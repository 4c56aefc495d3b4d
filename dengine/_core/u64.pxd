# cython: language_level=3
"""Inline helpers shared by the kernels: Python int <-> uint64 at the boundary.

Index and term are unsigned 64-bit inside the kernels and Python ints outside; every value that
crosses in is range-checked here, with the same OverflowError message as the references.
"""

from libc.stdint cimport uint64_t

cdef extern from *:
    """
    #define DENGINE_MAX_U64 ((uint64_t)0xFFFFFFFFFFFFFFFFULL)
    """
    const uint64_t DENGINE_MAX_U64

cdef extern from "Python.h":
    unsigned long long PyLong_AsUnsignedLongLong(object) noexcept
    void *PyErr_Occurred() noexcept
    bint PyErr_ExceptionMatches(object) noexcept
    void PyErr_Clear() noexcept


cdef inline uint64_t as_u64(object value, str name) except? 0xFFFFFFFFFFFFFFFF:
    """``value`` (an int) as uint64_t; OverflowError naming ``name`` when it does not fit."""
    cdef unsigned long long out = PyLong_AsUnsignedLongLong(value)
    if out == <unsigned long long>-1 and PyErr_Occurred() != NULL:
        if PyErr_ExceptionMatches(OverflowError):
            PyErr_Clear()
            raise OverflowError(f"{name}={value} is outside the unsigned 64-bit range")
        return out  # the TypeError raised above propagates
    return <uint64_t>out
