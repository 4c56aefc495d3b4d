# cython: language_level=3, binding=False
"""Printable text for keys and values, compiled; the reference (and the rules) is
dengine._core.ref.text.

Theory of operation: one C pass over the bytes. At each position a well-formed UTF-8 sequence
(no overlong form, no surrogate, nothing past U+10FFFF) is copied as it is, unless it is a
control character; a byte that starts none is written as ``\\xNN``. That is what decoding
with ``backslashreplace`` does, since the bytes after a bad lead are continuation bytes,
which never start a sequence. Escapes are ASCII, so the output is UTF-8 and decodes at C speed.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdlib cimport free, malloc

cdef const char* _HEX = b"0123456789abcdef"


cdef inline Py_ssize_t _sequence(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) nogil:
    """Length of the well-formed UTF-8 sequence of 2-4 bytes at ``p[i]``, or 0."""
    cdef unsigned char b0 = p[i]
    cdef unsigned char lo = 0x80, hi = 0xBF
    if 0xC2 <= b0 <= 0xDF:
        if i + 1 < n and 0x80 <= p[i + 1] <= 0xBF:
            return 2
        return 0
    if 0xE0 <= b0 <= 0xEF:
        if i + 2 >= n:
            return 0
        if b0 == 0xE0:
            lo = 0xA0
        elif b0 == 0xED:
            hi = 0x9F
        if lo <= p[i + 1] <= hi and 0x80 <= p[i + 2] <= 0xBF:
            return 3
        return 0
    if 0xF0 <= b0 <= 0xF4:
        if i + 3 >= n:
            return 0
        if b0 == 0xF0:
            lo = 0x90
        elif b0 == 0xF4:
            hi = 0x8F
        if lo <= p[i + 1] <= hi and 0x80 <= p[i + 2] <= 0xBF and 0x80 <= p[i + 3] <= 0xBF:
            return 4
        return 0
    return 0


cdef inline Py_ssize_t _hex(char* out, Py_ssize_t j, unsigned char b) nogil:
    out[j] = 92  # backslash
    out[j + 1] = 120  # x
    out[j + 2] = _HEX[b >> 4]
    out[j + 3] = _HEX[b & 15]
    return j + 4


def show(bytes data, bint lines=False):
    """``(text, escaped)``: ``data`` as printable text and whether anything was escaped."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t i = 0, j = 0, k
    cdef unsigned char b
    cdef bint escaped = False
    cdef char* out = <char*>malloc(4 * n + 1)
    if out == NULL:
        raise MemoryError()
    try:
        while i < n:
            b = p[i]
            if b < 0x80:
                if b == 0x09 or (b == 0x0A and lines) or (0x20 <= b < 0x7F):
                    out[j] = <char>b
                    j += 1
                elif b == 0x0A or b == 0x0D:
                    out[j] = 92
                    out[j + 1] = 110 if b == 0x0A else 114  # n, r
                    j += 2
                    escaped = True
                else:
                    j = _hex(out, j, b)
                    escaped = True
                i += 1
                continue
            k = _sequence(p, i, n)
            if k == 0:
                j = _hex(out, j, b)
                escaped = True
                i += 1
            elif k == 2 and b == 0xC2 and p[i + 1] <= 0x9F:  # U+0080..U+009F: C1 control
                j = _hex(out, j, p[i + 1])
                escaped = True
                i += 2
            else:
                while k:
                    out[j] = <char>p[i]
                    i += 1
                    j += 1
                    k -= 1
        return PyUnicode_DecodeUTF8(out, j, NULL), escaped
    finally:
        free(out)
