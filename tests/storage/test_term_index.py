"""The term index the adapters keep in memory: its errors are the store's, at the edges too.

* an index outside 64 bits is Compacted below the anchor and IndexOutOfRange past the end, as
  any other index not held (the kernel behind the index would say OverflowError);
* a term that falls along the log refuses to open with :class:`Corruption` naming the record
  (the file and offset for the WAL), writing nothing.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from rocksdict import Rdict

from dengine._core import codec
from dengine.errors import Compacted, Corruption, IndexOutOfRange
from dengine.storage import FileLogStore
from dengine.storage.rocksdb import CF_LOG, RocksLogStore, _cfs, _options
from dengine.testing.storage_conformance import make

SEG = 4096
RECORD = codec.RECORD_HEADER_BYTES + codec.ENTRY_HEADER_BYTES + 40
FALLS_AT = 70
BIG = 1 << 64


# index, the error a read raises, its bound (first or last index), the call that raises it too,
# and the one that has nothing to do there
OUTSIDE_64_BITS = [
    (-1, Compacted, 11, "truncate_suffix", "compact"),
    (-(1 << 70), Compacted, 11, "truncate_suffix", "compact"),
    (BIG, IndexOutOfRange, 30, "compact", "truncate_suffix"),
    (BIG + 5, IndexOutOfRange, 30, "compact", "truncate_suffix"),
]


@pytest.mark.parametrize(("index", "error", "bound", "raises", "no_op"), OUTSIDE_64_BITS)
def test_indexes_outside_64_bits_raise_the_store_errors(
    log_factory, index, error, bound, raises, no_op
):
    s = log_factory.open()
    try:
        s.append(make(1, 30, 2))
        s.compact(10)
        for call in (s.term, getattr(s, raises)):
            with pytest.raises(error) as err:
                call(index)
            assert err.value.args == error(index, bound).args  # fields and message
            assert err.value.index == index
        getattr(s, no_op)(index)
        assert (s.first_index(), s.last_index(), s.term(10)) == (11, 30, 2)
        assert s.entries(11, 31) == make(11, 30, 2)
    finally:
        s.close()


def _fingerprint(path: str) -> dict[str, str]:
    out = {}
    for root, _d, files in os.walk(path):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                out[os.path.relpath(os.path.join(root, f), path)] = hashlib.sha1(
                    fh.read()
                ).hexdigest()
    return out


def test_a_falling_term_in_the_wal_names_its_record(tmp_path):
    path = str(tmp_path / "log")
    s = FileLogStore(path, segment_bytes=SEG)
    for i in range(1, 101, 10):
        s.append(make(i, i + 9, 3, size=40))
    s.close()
    segs = sorted(n for n in os.listdir(path) if n.startswith("wal-"))
    firsts = [int(n[21:37], 16) for n in segs]
    k = max(i for i, f in enumerate(firsts) if f <= FALLS_AT)
    assert k > 0  # the record is in a later segment, not only in the first
    seg, offset = os.path.join(path, segs[k]), (FALLS_AT - firsts[k]) * RECORD
    bad = make(FALLS_AT, FALLS_AT, 2, size=40)[0]
    with open(seg, "r+b") as f:  # same size, valid checksums, a lower term
        f.seek(offset)
        f.write(codec.encode_entry_records([bad]))
    before = _fingerprint(path)
    with pytest.raises(Corruption, match="term falls") as err:
        FileLogStore(path, segment_bytes=SEG)
    assert (err.value.path, err.value.offset) == (seg, offset)
    assert _fingerprint(path) == before


def test_a_falling_term_in_rocksdb_names_its_index(tmp_path):
    path = str(tmp_path / "log")
    s = RocksLogStore(path)
    s.append(make(1, 100, 3))
    s.close()
    db_path = os.path.join(path, "db")
    db = Rdict(db_path, _options(), column_families=_cfs())
    bad = make(FALLS_AT, FALLS_AT, 2)[0]
    db.get_column_family(CF_LOG)[FALLS_AT.to_bytes(8, "big")] = codec.encode_entry(*bad)
    db.close()
    with pytest.raises(Corruption) as err:
        RocksLogStore(path)
    assert (err.value.path, err.value.reason) == (db_path, f"term falls at index {FALLS_AT}")
