# cython: language_level=3, binding=False
"""The in-memory index of the Raft log, compiled; the reference is dengine._core.ref.log_index.

Theory of operation: the terms of the held entries sit in one growable C array of uint64 with a
head offset. Compacting a prefix only moves the head (amortised: the array is slid back to the
start when it has to grow anyway), truncating a suffix only shortens the length, and appending
writes at the end. Terms never decrease along the log, so the searches used by fast
backtracking (first index of a term, last index whose term is at most T) are binary searches.
Indexes and terms are uint64 inside and Python ints at the boundary, range-checked.
"""

from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memmove

from dengine._core.u64 cimport DENGINE_MAX_U64, as_u64

from dengine.errors import Compacted, IndexOutOfRange

TERM_COMPACTED = -1
TERM_UNAVAILABLE = -2
MAX_U64 = (1 << 64) - 1

cdef enum:
    _OK = 0
    _COMPACTED = -1
    _UNAVAILABLE = -2
    _MIN_CAP = 64


cdef class LogIndex:
    """Terms of the log entries after a snapshot point."""

    def __cinit__(self):
        self.buf = NULL
        self.head = 0
        self.length = 0
        self.cap = 0

    def __init__(self, snapshot_index=0, snapshot_term=0):
        self.snap_index = as_u64(snapshot_index, "snapshot_index")
        self.snap_term = as_u64(snapshot_term, "snapshot_term")
        self.head = 0
        self.length = 0

    def __dealloc__(self):
        free(self.buf)
        self.buf = NULL

    # -- internals -------------------------------------------------------------------------
    cdef int lookup(self, uint64_t index, uint64_t *term) noexcept:
        if index < self.snap_index:
            return _COMPACTED
        if index == self.snap_index:
            term[0] = self.snap_term
            return _OK
        if index - self.snap_index > <uint64_t>self.length:
            return _UNAVAILABLE
        term[0] = self.buf[self.head + <Py_ssize_t>(index - self.snap_index) - 1]
        return _OK

    cdef int reserve(self, Py_ssize_t extra) except -1:
        """Make room for ``extra`` more terms at the end (slide back, or grow)."""
        cdef Py_ssize_t need = self.length + extra
        cdef Py_ssize_t new_cap
        cdef uint64_t *grown
        if self.head + need <= self.cap:
            return 0
        if self.head > 0 and need <= self.cap - self.cap // 4:
            memmove(self.buf, self.buf + self.head, <size_t>self.length * sizeof(uint64_t))
            self.head = 0
            return 0
        if self.head > 0:
            memmove(self.buf, self.buf + self.head, <size_t>self.length * sizeof(uint64_t))
            self.head = 0
        new_cap = self.cap * 2 if self.cap >= _MIN_CAP else _MIN_CAP
        while new_cap < need:
            new_cap *= 2
        grown = <uint64_t *>realloc(self.buf, <size_t>new_cap * sizeof(uint64_t))
        if grown == NULL:
            raise MemoryError()
        self.buf = grown
        self.cap = new_cap
        return 0

    cdef int append_u64(self, uint64_t term) except -1:
        cdef uint64_t last_term = self.buf[self.head + self.length - 1] if self.length else self.snap_term
        if term < last_term:
            raise ValueError(f"term {term} is below the last term {last_term}")
        if self.snap_index + <uint64_t>self.length == DENGINE_MAX_U64:
            raise OverflowError(
                f"index={(<object>DENGINE_MAX_U64) + 1} is outside the unsigned 64-bit range"
            )
        if self.head + self.length == self.cap:
            self.reserve(1)
        self.buf[self.head + self.length] = term
        self.length += 1
        return 0

    cdef object first_index_obj(self):
        if self.snap_index == DENGINE_MAX_U64:
            return (<object>self.snap_index) + 1
        return self.snap_index + 1

    cdef Py_ssize_t upper_bound(self, uint64_t term, Py_ssize_t n) noexcept:
        """Number of the first ``n`` held terms that are <= ``term`` (they form a prefix)."""
        cdef const uint64_t *a = self.buf + self.head
        cdef Py_ssize_t lo = 0, hi = n, mid
        while lo < hi:
            mid = lo + (hi - lo) // 2
            if a[mid] <= term:
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef Py_ssize_t lower_bound(self, uint64_t term) noexcept:
        """Position of the first held term that is >= ``term`` (``length`` when none)."""
        cdef const uint64_t *a = self.buf + self.head
        cdef Py_ssize_t lo = 0, hi = self.length, mid
        while lo < hi:
            mid = lo + (hi - lo) // 2
            if a[mid] < term:
                lo = mid + 1
            else:
                hi = mid
        return lo

    # -- positions -------------------------------------------------------------------------
    @property
    def snapshot_index(self):
        return self.snap_index

    @property
    def snapshot_term(self):
        return self.snap_term

    @property
    def first_index(self):
        """The first index still held (one past the snapshot), even when the log is empty."""
        return self.first_index_obj()

    @property
    def last_index(self):
        return self.snap_index + <uint64_t>self.length

    @property
    def last_term(self):
        return self.buf[self.head + self.length - 1] if self.length else self.snap_term

    def __len__(self):
        return self.length

    # -- lookups ---------------------------------------------------------------------------
    def maybe_term(self, index):
        """Term at ``index``; TERM_COMPACTED below the snapshot, TERM_UNAVAILABLE past the end."""
        cdef uint64_t t
        cdef int status = self.lookup(as_u64(index, "index"), &t)
        if status == _OK:
            return t
        return TERM_COMPACTED if status == _COMPACTED else TERM_UNAVAILABLE

    def term(self, index):
        """Term at ``index``; raises Compacted or IndexOutOfRange when it is not held."""
        cdef uint64_t t
        cdef int status = self.lookup(as_u64(index, "index"), &t)
        if status == _OK:
            return t
        if status == _COMPACTED:
            raise Compacted(index, self.first_index_obj())
        raise IndexOutOfRange(index, self.snap_index + <uint64_t>self.length)

    def match_term(self, index, term):
        """True when the entry at ``index`` is held (or is the snapshot point) with ``term``."""
        cdef uint64_t i = as_u64(index, "index")
        cdef uint64_t want = as_u64(term, "term")
        cdef uint64_t t
        return self.lookup(i, &t) == _OK and t == want

    # -- mutation --------------------------------------------------------------------------
    def append(self, term):
        """Append one entry of ``term`` at ``last_index + 1``; returns its index."""
        self.append_u64(as_u64(term, "term"))
        return self.snap_index + <uint64_t>self.length

    def extend(self, terms):
        """Append entries with these terms in order; returns the new last index."""
        cdef object seq = PySequence_Fast(terms, "terms must be iterable")
        cdef Py_ssize_t i, n = PySequence_Fast_GET_SIZE(seq)
        if n:
            self.reserve(n)
        for i in range(n):
            self.append_u64(as_u64(<object>PySequence_Fast_GET_ITEM(seq, i), "term"))
        return self.snap_index + <uint64_t>self.length

    def truncate_after(self, index):
        """Drop every entry after ``index`` (a suffix); ``index`` may be the snapshot point."""
        cdef uint64_t i = as_u64(index, "index")
        if i < self.snap_index:
            raise Compacted(index, self.first_index_obj())
        if i - self.snap_index > <uint64_t>self.length:
            raise IndexOutOfRange(index, self.snap_index + <uint64_t>self.length)
        self.length = <Py_ssize_t>(i - self.snap_index)
        if self.length == 0:
            self.head = 0

    def compact(self, index):
        """Drop every entry up to and including ``index``; it becomes the snapshot point."""
        cdef uint64_t i = as_u64(index, "index")
        cdef uint64_t t
        cdef Py_ssize_t k
        if i < self.snap_index:
            raise Compacted(index, self.first_index_obj())
        if i - self.snap_index > <uint64_t>self.length:
            raise IndexOutOfRange(index, self.snap_index + <uint64_t>self.length)
        self.lookup(i, &t)
        k = <Py_ssize_t>(i - self.snap_index)
        self.head += k
        self.length -= k
        if self.length == 0:
            self.head = 0
        self.snap_index = i
        self.snap_term = t

    def reset(self, snapshot_index, snapshot_term):
        """Forget the whole log and start after a snapshot at (index, term)."""
        cdef uint64_t i = as_u64(snapshot_index, "snapshot_index")
        cdef uint64_t t = as_u64(snapshot_term, "snapshot_term")
        self.snap_index = i
        self.snap_term = t
        self.head = 0
        self.length = 0
        if self.cap > 4 * _MIN_CAP:
            free(self.buf)
            self.buf = NULL
            self.cap = 0

    # -- searches --------------------------------------------------------------------------
    def find_conflict(self, first_index, terms):
        """First index of the incoming entries ``terms`` (starting at ``first_index``) whose
        term differs from the local log or that lies past its end; 0 when every entry is
        already held with the same term.

        Entries at or below the snapshot point count as matching: they are committed, and
        committed entries agree everywhere (Log Matching, Raft §5.3). Every term is checked
        to be a u64, even past the conflict.
        """
        cdef uint64_t first = as_u64(first_index, "first_index")
        cdef object seq = PySequence_Fast(terms, "terms must be iterable")
        cdef Py_ssize_t k, n = PySequence_Fast_GET_SIZE(seq)
        cdef uint64_t t, index, held
        cdef object conflict = 0
        cdef bint found = False
        cdef uint64_t last = self.snap_index + <uint64_t>self.length
        for k in range(n):
            t = as_u64(<object>PySequence_Fast_GET_ITEM(seq, k), "term")
            if found:
                continue
            if <uint64_t>k > DENGINE_MAX_U64 - first:
                # past the end of any log: a conflict at an index beyond u64
                conflict = first_index + k
                found = True
                continue
            index = first + <uint64_t>k
            if index <= self.snap_index:
                continue
            if index > last:
                conflict = index
                found = True
                continue
            held = self.buf[self.head + <Py_ssize_t>(index - self.snap_index) - 1]
            if held != t:
                conflict = index
                found = True
        return conflict

    def last_index_with_term_at_most(self, term, max_index):
        """Largest index ``i <= max_index`` held in the log whose term is ``<= term``.

        Used by fast backtracking (etcd's findConflictByTerm). The snapshot point is the
        floor: when no held entry qualifies, ``snapshot_index`` is returned.
        """
        cdef uint64_t t = as_u64(term, "term")
        cdef uint64_t m = as_u64(max_index, "max_index")
        cdef uint64_t last = self.snap_index + <uint64_t>self.length
        if m > last:
            m = last
        if m <= self.snap_index:
            return self.snap_index
        return self.snap_index + <uint64_t>self.upper_bound(t, <Py_ssize_t>(m - self.snap_index))

    def first_index_of_term(self, term):
        """Smallest held index whose term equals ``term``; 0 when no held entry has it."""
        cdef uint64_t t = as_u64(term, "term")
        cdef Py_ssize_t pos = self.lower_bound(t)
        if pos < self.length and self.buf[self.head + pos] == t:
            return self.snap_index + 1 + <uint64_t>pos
        return 0

    def terms(self, lo, hi):
        """Terms of the held entries in ``[lo, hi)``; raises when the range is not held."""
        cdef uint64_t a = as_u64(lo, "lo")
        cdef uint64_t b = as_u64(hi, "hi")
        cdef uint64_t last = self.snap_index + <uint64_t>self.length
        cdef Py_ssize_t i, n, base
        cdef list out
        cdef object v
        if a <= self.snap_index:
            raise Compacted(lo, self.first_index_obj())
        if b > 0 and b - 1 > last:
            raise IndexOutOfRange(hi - 1, last)
        if b <= a:
            return []
        n = <Py_ssize_t>(b - a)
        base = self.head + <Py_ssize_t>(a - self.snap_index) - 1
        out = PyList_New(n)
        for i in range(n):
            v = self.buf[base + i]
            Py_INCREF(v)
            PyList_SET_ITEM(out, i, v)
        return out
