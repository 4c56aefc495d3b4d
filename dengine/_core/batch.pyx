# cython: language_level=3, binding=False
"""The proposal batch buffer, compiled; the reference is dengine._core.ref.batch.

Theory of operation: proposals wait in two Python lists (payloads, tokens) read from a head
offset, so pushing is a list append and popping a batch is a bounds scan over the payload sizes
(read from the bytes objects in C) plus two list slices. The consumed prefix is dropped when the
buffer empties, or in bulk once it is large, so every operation is amortised O(batch).
A batch holds at most ``max_entries`` proposals and ``max_bytes`` of payload, except that a
single oversized proposal forms a batch of its own (it is never stuck).
"""

from cpython.bytes cimport PyBytes_Check, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM

cdef extern from "Python.h":
    Py_ssize_t PyNumber_AsSsize_t(object, void *) except? -1

cdef enum:
    _COMPACT_AFTER = 1024


cdef inline Py_ssize_t clip_ssize(object value) except? -1:
    """An int bound as Py_ssize_t, clipped to its range (the bound means the same there)."""
    return PyNumber_AsSsize_t(value, NULL)


cdef class BatchBuffer:
    """FIFO of (payload, token) pairs cut into bounded batches."""

    def __init__(self, max_entries, max_bytes):
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.payloads = []
        self.tokens = []
        self.head = 0
        self.nbytes = 0

    @property
    def max_entries(self):
        return self.max_entries_obj

    @max_entries.setter
    def max_entries(self, value):
        self.max_entries_c = clip_ssize(value)
        self.max_entries_obj = value

    @property
    def max_bytes(self):
        return self.max_bytes_obj

    @max_bytes.setter
    def max_bytes(self, value):
        self.max_bytes_c = clip_ssize(value)
        self.max_bytes_obj = value

    def __len__(self):
        return self.count()

    @property
    def pending_bytes(self):
        """Total payload bytes waiting."""
        return self.nbytes

    cdef int forget_popped(self) except -1:
        if self.head == len(self.payloads):
            del self.payloads[:]
            del self.tokens[:]
            self.head = 0
        elif self.head >= _COMPACT_AFTER and 2 * self.head >= len(self.payloads):
            del self.payloads[:self.head]
            del self.tokens[:self.head]
            self.head = 0
        return 0

    def push(self, payload, token=None):
        """Queue one proposal; ``token`` comes back beside it (e.g. the caller's future)."""
        if not PyBytes_Check(payload):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        self.payloads.append(payload)
        self.tokens.append(token)
        self.nbytes += PyBytes_GET_SIZE(payload)

    def ready(self):
        """True when a full batch (by count or by bytes) is waiting."""
        return self.count() >= self.max_entries_c or self.nbytes >= self.max_bytes_c

    def pop_batch(self):
        """Take the next batch from the front: payloads and their tokens, in push order."""
        cdef Py_ssize_t avail = self.count()
        cdef Py_ssize_t take = 0, size = 0, n
        cdef Py_ssize_t limit = self.max_entries_c
        cdef Py_ssize_t budget = self.max_bytes_c
        cdef Py_ssize_t head = self.head
        if limit > avail:
            limit = avail
        while take < limit:
            n = PyBytes_GET_SIZE(<object>PyList_GET_ITEM(self.payloads, head + take))
            if take and size + n > budget:
                break
            take += 1
            size += n
        if take == 0:
            return [], []
        payloads = self.payloads[head:head + take]
        tokens = self.tokens[head:head + take]
        self.head = head + take
        self.nbytes -= size
        self.forget_popped()
        return payloads, tokens

    def drain(self):
        """Take everything waiting, ignoring the bounds (used to fail proposals on stop)."""
        payloads = self.payloads[self.head:]
        tokens = self.tokens[self.head:]
        del self.payloads[:]
        del self.tokens[:]
        self.head = 0
        self.nbytes = 0
        return payloads, tokens
