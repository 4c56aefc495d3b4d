"""File-level damage to the WAL and to data directories: each gives its promised outcome.

* the last segment cut at every offset of its last record: opens, the torn record is gone,
  everything before it is intact, and the log goes on from there;
* a byte flipped in the middle of the log, a segment removed, a damaged small record: refuses to
  open with :class:`Corruption` naming the file (and the offset where known), writing nothing;
* a foreign or damaged data directory: a typed error, nothing written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct

import pytest

from dengine._core import codec
from dengine.errors import Corruption, ForeignDataDir, StorageIOError
from dengine.raft.types import Entry, HardState
from dengine.storage import FileLogStore, MemoryLogStore
from dengine.storage.rocksdb import RocksLogStore
from dengine.testing.storage_conformance import make

SEG = 4096
N = 200
ENTRIES = make(1, N, 1, size=40)
RECORD = codec.RECORD_HEADER_BYTES + codec.ENTRY_HEADER_BYTES + 40


def build(path: str, commit: int = N - 10) -> None:
    s = FileLogStore(path, segment_bytes=SEG)
    for i in range(0, N, 10):
        s.append(ENTRIES[i : i + 10])
    s.save_hard_state(HardState(1, 1, commit))
    s.close()


def segments(path: str) -> list[str]:
    return sorted(os.path.join(path, n) for n in os.listdir(path) if n.startswith("wal-"))


def fingerprint(path: str) -> dict[str, str]:
    out = {}
    for root, _d, files in os.walk(path):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                digest = hashlib.sha1(fh.read()).hexdigest()
                out[os.path.relpath(os.path.join(root, f), path)] = digest
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("wal") / "log")
    build(path)
    assert len(segments(path)) >= 3
    return path


def copy(pristine: str, tmp_path, name: str = "c") -> str:
    dst = os.path.join(tmp_path, name)
    shutil.copytree(pristine, dst)
    return dst


def test_cut_at_every_offset_of_the_last_record(pristine, tmp_path):
    last_seg = segments(pristine)[-1]
    size = os.path.getsize(last_seg)
    start = size - RECORD
    for cut in range(start, size):
        path = copy(pristine, tmp_path, f"cut{cut}")
        os.truncate(segments(path)[-1], cut)
        s = FileLogStore(path, segment_bytes=SEG)
        try:
            assert s.last_index() == N - 1, cut
            assert s.entries(1, N) == ENTRIES[:-1], cut
            assert os.path.getsize(segments(path)[-1]) == start, cut
            s.append([Entry(2, N, 0, b"again")])
        finally:
            s.close()
        s = FileLogStore(path, segment_bytes=SEG)
        assert s.entries(N - 1, N + 1) == [ENTRIES[-2], Entry(2, N, 0, b"again")]
        s.close()
        shutil.rmtree(path)


def test_a_zero_filled_tail_is_torn_and_cut(pristine, tmp_path):
    path = copy(pristine, tmp_path)
    with open(segments(path)[-1], "ab") as f:
        f.write(bytes(3000))
    s = FileLogStore(path, segment_bytes=SEG)
    assert s.entries(1, N + 1) == ENTRIES
    s.close()


def _record_starts(seg_path: str) -> list[int]:
    with open(seg_path, "rb") as f:
        buf = f.read()
    starts, pos = [], 0
    while pos < len(buf):
        starts.append(pos)
        (n,) = struct.unpack_from("<I", buf, pos)
        pos += codec.RECORD_HEADER_BYTES + n
    return starts


@pytest.mark.parametrize("which_seg", [0, 1, -1])
@pytest.mark.parametrize("where", ["length", "checksum", "payload"])
def test_a_flipped_byte_refuses_to_open(pristine, tmp_path, which_seg, where):
    path = copy(pristine, tmp_path)
    seg = segments(path)[which_seg]
    starts = _record_starts(seg)
    rec = starts[len(starts) // 2]
    at = rec + {"length": 1, "checksum": 5, "payload": codec.RECORD_HEADER_BYTES + 30}[where]
    with open(seg, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x40]))
    before = fingerprint(path)
    with pytest.raises(Corruption) as err:
        FileLogStore(path, segment_bytes=SEG)
    assert err.value.path == seg
    assert err.value.offset == rec
    assert fingerprint(path) == before


@pytest.mark.parametrize("which", [0, 1, -1])
def test_a_removed_segment_refuses_to_open(pristine, tmp_path, which):
    path = copy(pristine, tmp_path)
    os.unlink(segments(path)[which])
    before = fingerprint(path)
    with pytest.raises(Corruption, match="missing"):
        FileLogStore(path, segment_bytes=SEG)
    assert fingerprint(path) == before


def test_the_last_segment_removed_is_seen_without_a_hard_state(tmp_path):
    path = os.path.join(tmp_path, "log")
    build(path, commit=0)
    os.unlink(segments(path)[-1])
    with pytest.raises(Corruption, match="sealed"):
        FileLogStore(path, segment_bytes=SEG)


@pytest.mark.parametrize("name", ["HARDSTATE", "FORMAT", "ANCHOR"])
def test_a_damaged_small_record_refuses_to_open(pristine, tmp_path, name):
    path = copy(pristine, tmp_path)
    if name == "ANCHOR":
        s = FileLogStore(path, segment_bytes=SEG)
        s.compact(5)
        s.close()
    with open(os.path.join(path, name), "r+b") as f:
        f.seek(8)
        b = f.read(1)
        f.seek(8)
        f.write(bytes([b[0] ^ 1]))
    before = fingerprint(path)
    with pytest.raises(Corruption):
        FileLogStore(path, segment_bytes=SEG)
    assert fingerprint(path) == before


@pytest.mark.parametrize("store_cls", [FileLogStore, RocksLogStore])
def test_a_foreign_directory_is_refused_untouched(tmp_path, store_cls):
    path = os.path.join(tmp_path, "d")
    os.makedirs(path)
    with open(os.path.join(path, "notes.txt"), "w") as f:
        f.write("somebody else's data")
    with pytest.raises(ForeignDataDir):
        store_cls(path)
    assert os.listdir(path) == ["notes.txt"]


def test_the_other_kind_of_store_is_refused(tmp_path):
    path = os.path.join(tmp_path, "d")
    RocksLogStore(path).close()
    before = fingerprint(path)
    with pytest.raises(ForeignDataDir, match="rocksdb"):
        FileLogStore(path)
    assert fingerprint(path) == before


def test_a_failed_creation_leaves_no_store(tmp_path, monkeypatch):
    path = os.path.join(tmp_path, "d")

    def boom(tmp: str) -> None:
        with open(os.path.join(tmp, "half"), "w") as f:
            f.write("x")
        raise OSError("disk full")

    monkeypatch.setattr(FileLogStore, "_init_dir", staticmethod(boom))
    with pytest.raises(StorageIOError, match="disk full"):
        FileLogStore(path)
    assert not os.path.exists(path)
    monkeypatch.undo()
    s = FileLogStore(path)
    assert s.last_index() == 0
    s.close()


def test_rocksdb_damaged_entry_value_is_corruption(tmp_path):
    from rocksdict import Options, Rdict

    path = os.path.join(tmp_path, "r")
    s = RocksLogStore(path)
    s.append(make(1, 5, 1))
    s.close()
    opts = Options(raw_mode=True)
    cfs = {"log": Options(raw_mode=True), "meta": Options(raw_mode=True)}
    db = Rdict(os.path.join(path, "db"), opts, column_families=cfs)
    cf = db.get_column_family("log")
    # term 1 (so that open's scan passes), then bytes that do not decode as entry 3
    cf[(3).to_bytes(8, "big")] = (1).to_bytes(8, "little") + b"garbage, not an entry"
    del cf
    db.close()
    s = RocksLogStore(path)
    try:
        with pytest.raises(Corruption):
            s.entries(1, 6)
    finally:
        s.close()


def test_memory_store_keeps_nothing():
    assert MemoryLogStore.durable is False


def test_a_torn_seal_before_an_empty_last_segment_is_an_interrupted_roll(tmp_path):
    path = os.path.join(tmp_path, "log")
    build(path, commit=0)
    segs = segments(path)
    os.truncate(segs[-1], 0)  # the roll created the next segment, nothing reached it yet
    os.truncate(segs[-2], os.path.getsize(segs[-2]) - 10)  # and the seal was cut short
    s = FileLogStore(path, segment_bytes=SEG)
    try:
        kept = s.last_index()
        assert s.entries(1, kept + 1) == ENTRIES[:kept]
        s.append(make(kept + 1, kept + 3, 2))
    finally:
        s.close()
    s = FileLogStore(path, segment_bytes=SEG)
    assert s.last_index() == kept + 3
    s.close()


def test_a_torn_tail_in_the_middle_refuses_and_writes_nothing(pristine, tmp_path):
    path = copy(pristine, tmp_path)
    first = segments(path)[0]
    cut = os.path.getsize(first) - 10
    os.truncate(first, cut)
    with open(segments(path)[-1], "ab") as f:
        f.write(b"\x07\x00")  # a torn tail at the end too: it must not be cut either
    before = fingerprint(path)
    with pytest.raises(Corruption) as err:
        FileLogStore(path, segment_bytes=SEG)
    assert err.value.path == first
    assert fingerprint(path) == before
