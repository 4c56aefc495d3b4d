# cython: language_level=3, binding=False
"""Binary encodings, compiled; the reference (and the format spec) is dengine._core.ref.codec.

Theory of operation: every encoder computes the exact output size, allocates one bytes object
and writes the little-endian fields and payloads straight into it; every decoder reads the
input through the buffer protocol with no intermediate slices. CRC-32 (zlib polynomial) is a
slicing-by-8 table in C (codec.pxd), independent of zlib so that the reference checks it.
``decode_records`` and ``decode_entry_records`` walk the buffer in one C loop and classify the
stop exactly as the reference does: clean end, torn tail (partial record or zeros), corruption.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from dengine._core.u64 cimport as_u64

from dengine.errors import DecodeError

cdef extern from "Python.h":
    Py_ssize_t PyNumber_AsSsize_t(object, void *) except? -1

dengine_crc_init()

OP_PUT = 1
OP_DELETE = 2
OP_CAS = 3
OP_BATCH = 4
OP_SESSION = 5

CAS_EXPECT_VALUE = 1
CAS_EXPECT_VERSION = 2
CAS_DELETE = 4

RECORDS_CLEAN = 0
RECORDS_TORN = 1
RECORDS_CORRUPT = 2

RECORD_HEADER_BYTES = REC_HEADER
MAX_RECORD_BYTES = MAX_RECORD
ENTRY_HEADER_BYTES = ENTRY_HEADER

cdef enum:
    _CLEAN = 0
    _TORN = 1
    _CORRUPT = 2
    _PUT = 1
    _DELETE = 2
    _CAS = 3
    _BATCH = 4
    _SESSION = 5


def _crc32(data, value=0):
    """CRC-32 of ``data`` continuing from ``value``, as zlib.crc32 (exposed for tests)."""
    cdef Py_buffer view
    cdef uint32_t start = <uint32_t>as_u64(value, "value")
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return dengine_crc_update(start, <const unsigned char *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)


cdef inline object as_bytes(object data):
    """``data`` as bytes, the way the reference reads it: ``len(data)`` then ``bytes(data)``."""
    if PyBytes_Check(data):
        return data
    len(data)
    return bytes(data)


cdef inline unsigned char *bytes_ptr(object b) noexcept:
    return <unsigned char *>PyBytes_AS_STRING(b)


cdef inline uint32_t lv_len(object data) except? 0xFFFFFFFF:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    if <size_t>n > 0xFFFFFFFF:
        raise OverflowError(f"a field of {n} bytes exceeds the u32 length prefix")
    return <uint32_t>n


cdef inline unsigned char *put_lv(unsigned char *out, object data) noexcept:
    """Write ``u32 length | bytes`` of a bytes object; returns the position after it."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    dengine_store_u32(out, <uint32_t>n)
    memcpy(out + 4, PyBytes_AS_STRING(data), <size_t>n)
    return out + 4 + n


# -- entries ---------------------------------------------------------------------------------
cdef struct EntryFields:
    uint64_t term
    uint64_t index
    uint8_t kind
    uint32_t length


cdef int entry_fields(EntryFields *f, object term, object index, object kind,
                      object payload) except -1:
    """Range-check an entry's fields (payload already bytes); OverflowError like the ref."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    cdef uint64_t k
    f.term = as_u64(term, "term")
    f.index = as_u64(index, "index")
    k = as_u64(kind, "kind")
    if k > 0xFF:
        raise OverflowError(f"entry field out of range: kind={kind} does not fit in a u8")
    f.kind = <uint8_t>k
    if <size_t>n > 0xFFFFFFFF:
        raise OverflowError(f"entry field out of range: payload of {n} bytes")
    f.length = <uint32_t>n
    return 0


def encode_entry(term, index, kind, payload):
    """One log entry as bytes."""
    cdef EntryFields f
    payload = as_bytes(payload)
    entry_fields(&f, term, index, kind, payload)
    out = PyBytes_FromStringAndSize(NULL, ENTRY_HEADER + <Py_ssize_t>f.length)
    cdef unsigned char *p = bytes_ptr(out)
    put_entry_header(p, f.term, f.index, f.kind, f.length)
    memcpy(p + ENTRY_HEADER, PyBytes_AS_STRING(payload), f.length)
    return out


cdef object read_entry(const unsigned char *p, Py_ssize_t n):
    """(term, index, kind, payload) from exactly ``n`` bytes; DecodeError like the ref."""
    cdef uint32_t length
    if n < ENTRY_HEADER:
        raise DecodeError("entry", f"{n} bytes is shorter than the header")
    length = dengine_load_u32(p + 17)
    if ENTRY_HEADER + <Py_ssize_t>length != n:
        raise DecodeError("entry", f"payload length {length} does not match {n} bytes")
    return (
        dengine_load_u64(p),
        dengine_load_u64(p + 8),
        p[16],
        PyBytes_FromStringAndSize(<const char *>p + ENTRY_HEADER, length),
    )


def decode_entry(buf):
    """(term, index, kind, payload) from bytes made by encode_entry; the length must match."""
    cdef Py_buffer view
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        return read_entry(<const unsigned char *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


# -- KV commands -----------------------------------------------------------------------------
def encode_put(key, value):
    key = as_bytes(key)
    value = as_bytes(value)
    cdef Py_ssize_t size = 1 + 4 + lv_len(key) + 4 + lv_len(value)
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char *p = bytes_ptr(out)
    p[0] = _PUT
    put_lv(put_lv(p + 1, key), value)
    return out


def encode_delete(key):
    key = as_bytes(key)
    cdef Py_ssize_t size = 1 + 4 + lv_len(key)
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char *p = bytes_ptr(out)
    p[0] = _DELETE
    put_lv(p + 1, key)
    return out


def encode_cas(key, expected_value, expected_version, new_value):
    """Compare-and-set: write ``new_value`` (or delete when None) if the expectations hold."""
    cdef uint8_t flags = 0
    cdef uint64_t version = 0
    cdef Py_ssize_t size
    if expected_value is not None:
        flags |= CAS_EXPECT_VALUE
        expected_value = as_bytes(expected_value)
    if expected_version is not None:
        flags |= CAS_EXPECT_VERSION
        version = as_u64(expected_version, "expected_version")
    if new_value is None:
        flags |= CAS_DELETE
    else:
        new_value = as_bytes(new_value)
    key = as_bytes(key)
    size = 1 + 4 + lv_len(key) + 1
    if flags & CAS_EXPECT_VALUE:
        size += 4 + lv_len(expected_value)
    if flags & CAS_EXPECT_VERSION:
        size += 8
    if not flags & CAS_DELETE:
        size += 4 + lv_len(new_value)
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char *p = bytes_ptr(out)
    p[0] = _CAS
    p = put_lv(p + 1, key)
    p[0] = flags
    p += 1
    if flags & CAS_EXPECT_VALUE:
        p = put_lv(p, expected_value)
    if flags & CAS_EXPECT_VERSION:
        dengine_store_u64(p, version)
        p += 8
    if not flags & CAS_DELETE:
        put_lv(p, new_value)
    return out


def encode_batch(ops):
    """Atomic batch of ``(OP_PUT, key, value)`` and ``(OP_DELETE, key)`` tuples."""
    cdef object seq = PySequence_Fast(ops, "ops must be a sequence")
    cdef Py_ssize_t i, n = PySequence_Fast_GET_SIZE(seq)
    cdef Py_ssize_t size = 5
    cdef list parts = []   # alternating op code (int) and bytes fields, in write order
    cdef object op, code
    if <size_t>n > 0xFFFFFFFF:
        raise OverflowError(f"a batch of {n} ops exceeds the u32 count")
    for i in range(n):
        op = <object>PySequence_Fast_GET_ITEM(seq, i)
        code = op[0]
        if code == OP_PUT:
            key = as_bytes(op[1])
            value = as_bytes(op[2])
            size += 1 + 4 + lv_len(key) + 4 + lv_len(value)
            parts.append(_PUT)
            parts.append(key)
            parts.append(value)
        elif code == OP_DELETE:
            key = as_bytes(op[1])
            size += 1 + 4 + lv_len(key)
            parts.append(_DELETE)
            parts.append(key)
        else:
            raise ValueError(f"a batch holds only puts and deletes, got op {code!r}")
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char *p = bytes_ptr(out)
    p[0] = _BATCH
    dengine_store_u32(p + 1, <uint32_t>n)
    p += 5
    i = 0
    while i < len(parts):
        if parts[i] == _PUT:
            p[0] = _PUT
            p = put_lv(put_lv(p + 1, parts[i + 1]), parts[i + 2])
            i += 3
        else:
            p[0] = _DELETE
            p = put_lv(p + 1, parts[i + 1])
            i += 2
    return out


def encode_session(client_id, seq, command):
    """Wrap an encoded command with the client id and sequence number that dedupe retries."""
    cdef uint64_t c = as_u64(client_id, "client_id")
    cdef uint64_t s = as_u64(seq, "seq")
    if not PyBytes_Check(command):
        command = bytes(command)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(command)
    out = PyBytes_FromStringAndSize(NULL, 17 + n)
    cdef unsigned char *p = bytes_ptr(out)
    p[0] = _SESSION
    dengine_store_u64(p + 1, c)
    dengine_store_u64(p + 9, s)
    memcpy(p + 17, PyBytes_AS_STRING(command), <size_t>n)
    return out


cdef struct Reader:
    const unsigned char *buf
    Py_ssize_t size
    Py_ssize_t pos


cdef const unsigned char *take(Reader *r, Py_ssize_t n) except NULL:
    cdef const unsigned char *at
    if n > r.size - r.pos:
        raise DecodeError("command", f"truncated: need {n} bytes", r.pos)
    at = r.buf + r.pos
    r.pos += n
    return at


cdef inline object take_lv(Reader *r):
    cdef Py_ssize_t n = dengine_load_u32(take(r, 4))
    return PyBytes_FromStringAndSize(<const char *>take(r, n), n)


cdef object read_command(Reader *r, bint nested):
    cdef Py_ssize_t at = r.pos
    cdef uint8_t op = take(r, 1)[0]
    cdef uint8_t flags
    cdef uint32_t count, i
    cdef uint64_t client_id, seq
    cdef list ops
    if op == _PUT:
        key = take_lv(r)
        return (OP_PUT, key, take_lv(r))
    if op == _DELETE:
        return (OP_DELETE, take_lv(r))
    if nested:
        raise DecodeError("command", f"op {op} is not allowed inside a batch", at)
    if op == _CAS:
        key = take_lv(r)
        flags = take(r, 1)[0]
        if flags & ~(CAS_EXPECT_VALUE | CAS_EXPECT_VERSION | CAS_DELETE):
            raise DecodeError("command", f"unknown CAS flags {flags:#x}", at)
        ev = take_lv(r) if flags & CAS_EXPECT_VALUE else None
        ever = dengine_load_u64(take(r, 8)) if flags & CAS_EXPECT_VERSION else None
        nv = None if flags & CAS_DELETE else take_lv(r)
        return (OP_CAS, key, ev, ever, nv)
    if op == _BATCH:
        count = dengine_load_u32(take(r, 4))
        ops = []
        for i in range(count):
            ops.append(read_command(r, True))
        return (OP_BATCH, ops)
    if op == _SESSION:
        client_id = dengine_load_u64(take(r, 8))
        seq = dengine_load_u64(take(r, 8))
        if r.pos < r.size and r.buf[r.pos] == _SESSION:
            raise DecodeError("command", "a session cannot wrap a session", r.pos)
        return (OP_SESSION, client_id, seq, read_command(r, False))
    raise DecodeError("command", f"unknown op {op}", at)


def decode_command(buf):
    """Decode one KV command; every byte must be used."""
    cdef Py_buffer view
    cdef Reader r
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        r.buf = <const unsigned char *>view.buf
        r.size = view.len
        r.pos = 0
        cmd = read_command(&r, False)
        if r.pos != r.size:
            raise DecodeError("command", f"{r.size - r.pos} trailing bytes", r.pos)
        return cmd
    finally:
        PyBuffer_Release(&view)


# -- WAL records -----------------------------------------------------------------------------
cdef inline object as_buffer_bytes(object payload):
    """A record payload as bytes: bytes as is, any other buffer copied (as zlib.crc32 reads)."""
    if PyBytes_Check(payload):
        return payload
    return bytes(memoryview(payload))


def encode_record(payload):
    """Frame one payload: length, payload checksum, header checksum, payload."""
    payload = as_buffer_bytes(payload)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    if n > MAX_RECORD:
        raise ValueError(f"record of {n} bytes exceeds {MAX_RECORD}")
    out = PyBytes_FromStringAndSize(NULL, REC_HEADER + n)
    cdef unsigned char *p = bytes_ptr(out)
    memcpy(p + REC_HEADER, PyBytes_AS_STRING(payload), <size_t>n)
    put_record_header(p, <uint32_t>n, crc32(p + REC_HEADER, <size_t>n))
    return out


def encode_records(payloads):
    cdef object seq = PySequence_Fast(payloads, "payloads must be a sequence")
    cdef Py_ssize_t i, n = PySequence_Fast_GET_SIZE(seq), size = 0, k
    cdef list items = []
    for i in range(n):
        item = as_buffer_bytes(<object>PySequence_Fast_GET_ITEM(seq, i))
        k = PyBytes_GET_SIZE(item)
        if k > MAX_RECORD:
            raise ValueError(f"record of {k} bytes exceeds {MAX_RECORD}")
        items.append(item)
        size += REC_HEADER + k
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char *p = bytes_ptr(out)
    for item in items:
        k = PyBytes_GET_SIZE(item)
        memcpy(p + REC_HEADER, PyBytes_AS_STRING(item), <size_t>k)
        put_record_header(p, <uint32_t>k, crc32(p + REC_HEADER, <size_t>k))
        p += REC_HEADER + k
    return out


def encode_entry_records(entries):
    """Frame a batch of (term, index, kind, payload) entries, one record each."""
    cdef object seq = PySequence_Fast(entries, "entries must be a sequence")
    cdef Py_ssize_t i, n = PySequence_Fast_GET_SIZE(seq), size = 0, k
    cdef EntryFields *fields
    cdef list payloads = []
    cdef object e
    cdef unsigned char *p
    cdef unsigned char *body
    if n == 0:
        return b""
    fields = <EntryFields *>malloc(<size_t>n * sizeof(EntryFields))
    if fields == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            e = PySequence_Fast(<object>PySequence_Fast_GET_ITEM(seq, i), "an entry must be a tuple")
            if PySequence_Fast_GET_SIZE(e) != 4:
                raise TypeError(
                    f"an entry is (term, index, kind, payload), got {PySequence_Fast_GET_SIZE(e)} fields"
                )
            payload = as_bytes(<object>PySequence_Fast_GET_ITEM(e, 3))
            entry_fields(&fields[i], <object>PySequence_Fast_GET_ITEM(e, 0),
                         <object>PySequence_Fast_GET_ITEM(e, 1),
                         <object>PySequence_Fast_GET_ITEM(e, 2), payload)
            k = ENTRY_HEADER + <Py_ssize_t>fields[i].length
            if k > MAX_RECORD:
                raise ValueError(f"record of {k} bytes exceeds {MAX_RECORD}")
            payloads.append(payload)
            size += REC_HEADER + k
        out = PyBytes_FromStringAndSize(NULL, size)
        p = bytes_ptr(out)
        for i in range(n):
            payload = payloads[i]
            k = ENTRY_HEADER + <Py_ssize_t>fields[i].length
            body = p + REC_HEADER
            put_entry_header(body, fields[i].term, fields[i].index, fields[i].kind, fields[i].length)
            memcpy(body + ENTRY_HEADER, PyBytes_AS_STRING(payload), fields[i].length)
            put_record_header(p, <uint32_t>k, crc32(body, <size_t>k))
            p += REC_HEADER + k
        return out
    finally:
        free(fields)


cdef int check_record(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t size,
                      Py_ssize_t *end) noexcept nogil:
    """Status of the record at ``pos``; ``end`` gets its end when its header is intact."""
    cdef uint32_t n
    end[0] = -1
    if size - pos < REC_HEADER:
        return _TORN
    n = dengine_load_u32(buf + pos)
    if crc32(buf + pos, 8) != dengine_load_u32(buf + pos + 8) or n > MAX_RECORD:
        return _CORRUPT
    if <Py_ssize_t>n > size - pos - REC_HEADER:
        return _TORN
    end[0] = pos + REC_HEADER + n
    if crc32(buf + pos + REC_HEADER, n) != dengine_load_u32(buf + pos + 4):
        return _CORRUPT
    return _CLEAN


cdef bint all_zero(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i]:
            return False
    return True


cdef object walk_records(object buf, object offset, bint as_entries):
    """The one loop behind decode_records and decode_entry_records (see the ref's doc)."""
    cdef Py_buffer view
    cdef Py_ssize_t pos, end, size
    cdef int status = _CLEAN
    cdef const unsigned char *b
    cdef list records = []
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        b = <const unsigned char *>view.buf
        size = view.len
        pos = PyNumber_AsSsize_t(offset, NULL)
        if pos < 0 or pos > size:
            raise ValueError(f"offset {offset} outside the buffer of {size} bytes")
        while pos < size:
            status = check_record(b, pos, size, &end)
            if status != _CLEAN:
                break
            if as_entries:
                records.append(read_entry(b + pos + REC_HEADER, end - pos - REC_HEADER))
            else:
                records.append(PyBytes_FromStringAndSize(
                    <const char *>b + pos + REC_HEADER, end - pos - REC_HEADER))
            pos = end
        if status == _CLEAN:
            return records, pos, RECORDS_CLEAN, -1
        if all_zero(b + pos, size - pos):
            return records, pos, RECORDS_TORN, -1
        if status == _CORRUPT:
            return records, pos, RECORDS_CORRUPT, end
        return records, pos, RECORDS_TORN, -1
    finally:
        PyBuffer_Release(&view)


def decode_records(buf, offset=0):
    """Read records from ``offset`` until the end or the first bad one (see module doc)."""
    return walk_records(buf, offset, False)


def decode_entry_records(buf, offset=0):
    """decode_records, with each payload decoded as an entry."""
    return walk_records(buf, offset, True)
