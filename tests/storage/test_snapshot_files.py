"""Snapshot files: round trip, every kind of damage refused, incoming bytes, clean-up."""

from __future__ import annotations

import os

import pytest

from dengine.errors import SnapshotError
from dengine.raft.types import ConfState, SnapshotMeta
from dengine.storage.snapshot import SnapshotReader, SnapshotStore

META = SnapshotMeta(120, 4, ConfState(frozenset({1, 2, 3}), frozenset({7})))
CHUNKS = [bytes([i]) * (100 + i * 37) for i in range(12)] + [b""]


@pytest.fixture
def written(tmp_path) -> tuple[SnapshotStore, str]:
    store = SnapshotStore(str(tmp_path / "snaps"))
    return store, store.write(META, iter(CHUNKS))


def test_round_trip(written):
    store, path = written
    r = store.latest()
    assert r.path == path and r.meta == META
    r.verify()
    assert list(r.chunks()) == CHUNKS


def _flip(path: str, at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x10]))


def test_every_flipped_byte_is_refused(written):
    """Flip each byte in turn (stepping for speed): open or verify must refuse every one."""
    _store, path = written
    size = os.path.getsize(path)
    for at in list(range(0, 64)) + list(range(64, size, 7)) + list(range(size - 30, size)):
        _flip(path, at)
        with pytest.raises(SnapshotError):
            SnapshotReader(path).verify()
        _flip(path, at)
    SnapshotReader(path).verify()


def test_a_corrupted_chunk_is_refused_before_anything_is_yielded_by_verify(written):
    _store, path = written
    _flip(path, os.path.getsize(path) // 2)
    r = SnapshotReader(path)
    with pytest.raises(SnapshotError, match="chunk"):
        r.verify()


@pytest.mark.parametrize("cut", [5, 40, 300, -30, -1])
def test_a_cut_file_is_refused(written, cut):
    _store, path = written
    size = os.path.getsize(path)
    os.truncate(path, cut if cut > 0 else size + cut)
    with pytest.raises(SnapshotError):
        SnapshotReader(path).verify()


def test_bytes_after_the_trailer_are_refused(written):
    _store, path = written
    with open(path, "ab") as f:
        f.write(b"x")
    with pytest.raises(SnapshotError, match="after the trailer"):
        SnapshotReader(path).verify()


def test_incoming_bytes_become_visible_only_when_whole(written, tmp_path):
    _store, path = written
    with open(path, "rb") as f:
        data = f.read()
    dest = SnapshotStore(str(tmp_path / "peer"))
    inc = dest.incoming()
    for i in range(0, len(data), 1000):
        inc.write(data[i : i + 1000])
    r = inc.commit()
    assert r.meta == META and list(r.chunks()) == CHUNKS
    bad = dest.incoming()
    bad.write(data[:-10])
    with pytest.raises(SnapshotError):
        bad.commit()
    assert [os.path.basename(p) for _i, _t, p in dest.list()] == [os.path.basename(path)]
    assert len(os.listdir(dest.directory)) == 1


def test_cleanup_keeps_the_newest_and_leftovers_go(tmp_path):
    store = SnapshotStore(str(tmp_path / "s"))
    for i in (5, 9, 7):
        store.write(SnapshotMeta(i, 1), [b"x"], keep=10)
    with open(os.path.join(store.directory, "half.snap.tmp"), "wb") as f:
        f.write(b"partial")
    store.cleanup(keep=2)
    assert [i for i, _t, _p in store.list()] == [7, 9]
    store = SnapshotStore(store.directory)
    assert sorted(os.listdir(store.directory)) == [os.path.basename(p) for _i, _t, p in store.list()]
    assert store.latest().meta.index == 9


def test_a_failing_chunk_source_leaves_no_file(tmp_path):
    store = SnapshotStore(str(tmp_path / "s"))

    def chunks():
        yield b"a"
        raise OSError("source died")

    with pytest.raises(OSError):
        store.write(META, chunks())
    assert os.listdir(store.directory) == []


def test_a_framed_stream_is_byte_for_byte_the_file(written):
    """What a leader streams from a pinned view is exactly what the writer puts in a file."""
    from dengine.storage.snapshot import framed

    _store, path = written
    with open(path, "rb") as f:
        assert b"".join(framed(META, iter(CHUNKS))) == f.read()
