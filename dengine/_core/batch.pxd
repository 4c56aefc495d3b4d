# cython: language_level=3

cdef class BatchBuffer:
    # Waiting proposals are payloads[head:] and tokens[head:] (same length); popped slots
    # before ``head`` are dropped in bulk, so a pop never shifts the lists one by one.
    # nbytes == sum(len(p) for p in payloads[head:]).
    cdef list payloads
    cdef list tokens
    cdef Py_ssize_t head
    cdef Py_ssize_t nbytes
    # the bounds as given (returned by the properties) and clipped to Py_ssize_t for C
    cdef object max_entries_obj
    cdef object max_bytes_obj
    cdef Py_ssize_t max_entries_c
    cdef Py_ssize_t max_bytes_c

    cdef inline Py_ssize_t count(self) noexcept:
        return len(self.payloads) - self.head

    cdef int forget_popped(self) except -1
