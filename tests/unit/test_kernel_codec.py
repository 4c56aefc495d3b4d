"""The compiled codec agrees with its reference byte for byte; torn and corrupt WAL tails."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dengine._core import load
from dengine.errors import DecodeError

REF = load("codec", compiled=False)
FAST = load("codec", compiled=True)
MAX_U64 = (1 << 64) - 1


@pytest.fixture
def impl(flavour):
    return load("codec", compiled=flavour == "compiled")


def outcome(fn, *args):
    """("ok", value) or ("err", type, fields): DecodeErrors must agree on what and where."""
    try:
        return ("ok", fn(*args))
    except DecodeError as e:
        return ("err", DecodeError, vars(e))
    except (ValueError, OverflowError, TypeError) as e:
        return ("err", type(e))


u64 = st.one_of(st.integers(0, 1000), st.integers(0, MAX_U64))
payloads = st.binary(max_size=64)
entries = st.lists(st.tuples(u64, u64, st.integers(0, 255), payloads), max_size=8)


def command():
    put = st.tuples(st.just(REF.OP_PUT), payloads, payloads)
    delete = st.tuples(st.just(REF.OP_DELETE), payloads)
    cas = st.tuples(
        st.just(REF.OP_CAS), payloads, st.none() | payloads, st.none() | u64, st.none() | payloads
    )
    batch = st.tuples(st.just(REF.OP_BATCH), st.lists(put | delete, max_size=5))
    simple = put | delete | cas | batch
    session = st.tuples(st.just(REF.OP_SESSION), u64, u64, simple)
    return simple | session


def encode(codec, cmd):
    op = cmd[0]
    if op == codec.OP_PUT:
        return codec.encode_put(cmd[1], cmd[2])
    if op == codec.OP_DELETE:
        return codec.encode_delete(cmd[1])
    if op == codec.OP_CAS:
        return codec.encode_cas(*cmd[1:])
    if op == codec.OP_BATCH:
        return codec.encode_batch(cmd[1])
    return codec.encode_session(cmd[1], cmd[2], encode(codec, cmd[3]))


def canonical(cmd):
    """A command as decode_command returns it (batches decode to lists)."""
    if cmd[0] == REF.OP_BATCH:
        return (cmd[0], [tuple(op) for op in cmd[1]])
    if cmd[0] == REF.OP_SESSION:
        return cmd[:3] + (canonical(cmd[3]),)
    return cmd


# -- agreement: entries and commands -----------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(entries)
def test_entries_round_trip_identically(batch):
    data = FAST.encode_entry_records(batch)
    assert data == REF.encode_entry_records(batch)
    assert FAST.decode_entry_records(data) == REF.decode_entry_records(data)
    assert FAST.decode_entry_records(data) == (batch, len(data), REF.RECORDS_CLEAN, -1)
    for e in batch:
        one = FAST.encode_entry(*e)
        assert one == REF.encode_entry(*e)
        assert FAST.decode_entry(one) == REF.decode_entry(one) == e


@settings(max_examples=200, deadline=None)
@given(command())
def test_commands_round_trip_identically(cmd):
    data = encode(FAST, cmd)
    assert data == encode(REF, cmd)
    assert FAST.decode_command(data) == REF.decode_command(data) == canonical(cmd)


@settings(max_examples=200, deadline=None)
@given(command(), st.data())
def test_damaged_commands_fail_alike(cmd, data):
    """Cut, extended or bit-flipped encodings: same result or the same DecodeError."""
    buf = bytearray(encode(REF, cmd))
    how = data.draw(st.sampled_from(["cut", "extend", "flip"]))
    if how == "cut":
        del buf[data.draw(st.integers(0, len(buf))) :]
    elif how == "extend":
        buf += data.draw(st.binary(min_size=1, max_size=4))
    else:
        buf[data.draw(st.integers(0, len(buf) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    assert outcome(FAST.decode_command, bytes(buf)) == outcome(REF.decode_command, bytes(buf))


@settings(max_examples=150, deadline=None)
@given(st.tuples(u64, u64, st.integers(0, 255), payloads), st.data())
def test_damaged_entries_fail_alike(entry, data):
    """Entries cut, extended or bit-flipped, alone and inside records with valid checksums."""
    buf = bytearray(REF.encode_entry(*entry))
    how = data.draw(st.sampled_from(["cut", "extend", "flip", "length"]))
    if how == "cut":
        del buf[data.draw(st.integers(0, len(buf))) :]
    elif how == "extend":
        buf += data.draw(st.binary(min_size=1, max_size=4))
    elif how == "flip":
        buf[data.draw(st.integers(0, len(buf) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    else:  # a length field off by a little
        n = len(entry[3]) + data.draw(st.integers(-2, 2))
        buf[17:21] = (n % (1 << 32)).to_bytes(4, "little")
    buf = bytes(buf)
    assert outcome(FAST.decode_entry, buf) == outcome(REF.decode_entry, buf)
    framed = REF.encode_records([REF.encode_entry(1, 1, 0, b"ok"), buf])
    assert outcome(FAST.decode_entry_records, framed) == outcome(REF.decode_entry_records, framed)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes_decode_alike(buf):
    assert outcome(FAST.decode_command, buf) == outcome(REF.decode_command, buf)
    assert outcome(FAST.decode_entry, buf) == outcome(REF.decode_entry, buf)
    assert outcome(FAST.decode_records, buf) == outcome(REF.decode_records, buf)
    assert outcome(FAST.decode_entry_records, buf) == outcome(REF.decode_entry_records, buf)


@settings(max_examples=100, deadline=None)
@given(st.tuples(st.integers(-2, MAX_U64 + 2), st.integers(-2, MAX_U64 + 2), st.integers(-2, 258)))
def test_out_of_range_fields_raise_alike(fields):
    term, index, kind = fields
    args = (term, index, kind, b"p")
    assert outcome(FAST.encode_entry, *args)[:2] == outcome(REF.encode_entry, *args)[:2]
    got = outcome(FAST.encode_entry_records, [args])[:2]
    assert got == outcome(REF.encode_entry_records, [args])[:2]
    got = outcome(FAST.encode_session, term, index, b"")
    assert got == outcome(REF.encode_session, term, index, b"")
    got = outcome(FAST.encode_cas, b"k", None, term, b"v")
    assert got == outcome(REF.encode_cas, b"k", None, term, b"v")


# -- agreement: WAL records, cut and damaged -------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=24), min_size=1, max_size=4))
def test_records_cut_at_every_byte_offset(records):
    data = FAST.encode_records(records)
    assert data == REF.encode_records(records)
    boundaries = {0}
    for r in records:
        boundaries.add(max(boundaries) + REF.RECORD_HEADER_BYTES + len(r))
    for cut in range(len(data) + 1):
        got = FAST.decode_records(data[:cut])
        assert got == REF.decode_records(data[:cut])
        want_status = REF.RECORDS_CLEAN if cut in boundaries else REF.RECORDS_TORN
        assert got[2] == want_status, cut
        assert got[1] == max(b for b in boundaries if b <= cut)


@settings(max_examples=30, deadline=None)
@given(entries.filter(bool))
def test_entry_records_cut_at_every_byte_offset(batch):
    data = REF.encode_entry_records(batch)
    for cut in range(len(data) + 1):
        got = FAST.decode_entry_records(data[:cut])
        assert got == REF.decode_entry_records(data[:cut])
        assert got[0] == batch[: len(got[0])]
        assert got[2] == (REF.RECORDS_CLEAN if cut == got[1] else REF.RECORDS_TORN)


@settings(max_examples=40, deadline=None)
@given(entries.filter(bool), st.data())
def test_entry_records_with_flipped_bits(batch, data):
    buf = bytearray(FAST.encode_entry_records(batch))
    for _ in range(data.draw(st.integers(1, 3))):
        buf[data.draw(st.integers(0, len(buf) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    buf = bytes(buf)
    got = outcome(FAST.decode_entry_records, buf)
    assert got == outcome(REF.decode_entry_records, buf)
    assert outcome(FAST.decode_records, buf) == outcome(REF.decode_records, buf)
    status = got[1][2] if got[0] == "ok" else None
    assert status != REF.RECORDS_CLEAN or len(got[1][0]) == len(batch)


@settings(max_examples=60, deadline=None)
@given(st.lists(payloads, max_size=4), st.integers(0, 3), st.integers(1, 30), st.data())
def test_every_flipped_bit_and_all_zero_tails(records, pick, zeros, data):
    data_ = REF.encode_records(records)
    offsets = [0]
    for r in records:
        offsets.append(offsets[-1] + REF.RECORD_HEADER_BYTES + len(r))
    start = offsets[min(pick, len(offsets) - 1)]
    for bit in range(0, len(data_) * 8, max(1, len(data_) // 4)):
        buf = bytearray(data_)
        buf[bit // 8] ^= 1 << (bit % 8)
        assert outcome(FAST.decode_records, bytes(buf), start) == outcome(
            REF.decode_records, bytes(buf), start
        )
    tail = data_ + bytes(zeros)
    got = FAST.decode_records(tail, start)
    assert got == REF.decode_records(tail, start)
    assert got[1:] == (len(data_), REF.RECORDS_TORN, -1)
    bad_offset = data.draw(st.sampled_from([-1, len(data_) + 1, 1 << 70]))
    got = outcome(FAST.decode_records, data_, bad_offset)
    assert got == outcome(REF.decode_records, data_, bad_offset) == ("err", ValueError)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 2**32 - 1))
def test_crc32_matches_zlib(data, start):
    assert FAST._crc32(data) == zlib.crc32(data)
    assert FAST._crc32(data, start) == zlib.crc32(data, start)


# -- edge cases, on both implementations -----------------------------------------------------
def test_constants_match(impl):
    names = [n for n in dir(REF) if n.isupper() and not n.startswith("_")]
    assert names
    assert {n: getattr(impl, n) for n in names} == {n: getattr(REF, n) for n in names}


def test_zero_length_payloads(impl):
    assert impl.decode_entry(impl.encode_entry(0, 0, 0, b"")) == (0, 0, 0, b"")
    rec = impl.encode_records([b"", b"", b""])
    assert impl.decode_records(rec) == ([b"", b"", b""], 36, impl.RECORDS_CLEAN, -1)
    assert impl.decode_command(impl.encode_put(b"", b"")) == (impl.OP_PUT, b"", b"")
    assert impl.encode_entry_records([]) == b""
    assert impl.decode_entry_records(b"") == ([], 0, impl.RECORDS_CLEAN, -1)


def test_entry_layout(impl):
    data = impl.encode_entry(0x0102, 7, 1, b"ab")
    assert data == bytes.fromhex("0201000000000000" "0700000000000000" "01" "02000000") + b"ab"
    with pytest.raises(DecodeError):
        impl.decode_entry(data[:-1])
    with pytest.raises(DecodeError):
        impl.decode_entry(data[:20])
    assert impl.decode_entry(memoryview(data)) == (0x0102, 7, 1, b"ab")


def test_record_layout_and_buffers(impl):
    rec = impl.encode_record(b"hello")
    head = (5).to_bytes(4, "little") + zlib.crc32(b"hello").to_bytes(4, "little")
    assert rec == head + zlib.crc32(head).to_bytes(4, "little") + b"hello"
    assert impl.encode_record(bytearray(b"hello")) == rec
    assert impl.decode_records(bytearray(rec * 2), len(rec)) == ([b"hello"], 34, 0, -1)


def test_torn_and_corrupt_are_told_apart(impl):
    one, two = impl.encode_record(b"first"), impl.encode_record(b"second")
    data = one + two
    assert impl.decode_records(data[:-1])[1:] == (len(one), impl.RECORDS_TORN, -1)
    assert impl.decode_records(data[: len(one) + 5])[1:] == (len(one), impl.RECORDS_TORN, -1)
    bad_payload = bytearray(data)
    bad_payload[-1] ^= 0xFF
    assert impl.decode_records(bytes(bad_payload))[1:] == (
        len(one),
        impl.RECORDS_CORRUPT,
        len(data),  # the header was intact: the record after this one can be found
    )
    bad_length = bytearray(data)
    bad_length[len(one)] ^= 0x01
    assert impl.decode_records(bytes(bad_length))[1:] == (len(one), impl.RECORDS_CORRUPT, -1)
    assert impl.decode_records(one + bytes(7))[1:] == (len(one), impl.RECORDS_TORN, -1)
    assert impl.decode_records(one + bytes(40))[1:] == (len(one), impl.RECORDS_TORN, -1)
    assert impl.decode_records(one + bytes(40) + b"\x01")[2] == impl.RECORDS_CORRUPT


def test_command_errors(impl):
    put = impl.encode_put(b"k", b"v")
    with pytest.raises(DecodeError) as e:
        impl.decode_command(put + b"x")
    assert e.value.offset == len(put)
    with pytest.raises(DecodeError):
        impl.decode_command(b"")
    with pytest.raises(DecodeError):
        impl.decode_command(bytes([99]))
    nested = impl.encode_session(1, 2, impl.encode_session(3, 4, put))
    with pytest.raises(DecodeError):
        impl.decode_command(nested)
    with pytest.raises(DecodeError):
        impl.decode_command(bytes([impl.OP_BATCH, 1, 0, 0, 0, impl.OP_CAS]))
    with pytest.raises(ValueError):
        impl.encode_batch([(impl.OP_CAS, b"k", None, None, None)])
    bad_flags = bytearray(impl.encode_cas(b"k", None, None, b"v"))
    bad_flags[6] = 0x08
    with pytest.raises(DecodeError):
        impl.decode_command(bytes(bad_flags))


def test_u64_range_is_checked(impl):
    with pytest.raises(OverflowError):
        impl.encode_entry(-1, 0, 0, b"")
    with pytest.raises(OverflowError):
        impl.encode_entry(0, MAX_U64 + 1, 0, b"")
    with pytest.raises(OverflowError):
        impl.encode_entry(0, 0, 256, b"")
    with pytest.raises(OverflowError):
        impl.encode_session(MAX_U64 + 1, 0, b"")
    with pytest.raises(OverflowError):
        impl.encode_cas(b"k", None, -1, None)
    assert impl.decode_entry(impl.encode_entry(MAX_U64, MAX_U64, 255, b"")) == (
        MAX_U64,
        MAX_U64,
        255,
        b"",
    )
