"""RaftLog, MemoryStorage and the Inflights ring on their own."""

from __future__ import annotations

import random

import pytest

from dengine.errors import Compacted
from dengine.raft import Message, MessageType, RaftConfig, RaftCore
from dengine.raft.log import MemoryStorage, RaftLog, iter_chunks, limit_size
from dengine.raft.tracker import Inflights
from dengine.raft.types import Entry


def ents(terms, start=1, size=0):
    return [Entry(t, start + k, 0, bytes(size)) for k, t in enumerate(terms)]


def test_limit_size_keeps_at_least_one_entry_and_stays_within_the_budget():
    e = ents([1] * 5, size=10)
    assert limit_size(e, None) == e
    assert limit_size(e, 25) == e[:2]
    assert limit_size(e, 5) == e[:1]
    assert limit_size(e, 50) == e
    assert limit_size([], 5) == []


def test_iter_chunks_reads_a_range_in_bounded_batches():
    st = MemoryStorage()
    st.append(ents([1] * 10, size=100))
    chunks = list(iter_chunks(st, 1, 11, max_bytes=250))
    assert [len(c) for c in chunks] == [2, 2, 2, 2, 2]
    assert [e.index for c in chunks for e in c] == list(range(1, 11))


def test_memory_storage_append_replaces_the_suffix():
    st = MemoryStorage()
    st.append(ents([1, 1, 1, 1]))
    st.append(ents([2, 2], start=3))
    assert [e.term for e in st.entries(1, 5)] == [1, 1, 2, 2]
    st.append(ents([3], start=2))
    assert st.last_index() == 2 and st.term(2) == 3
    st.compact(1)
    with pytest.raises(Compacted):
        st.entries(1, 2)
    assert st.term(1) == 1 and st.first_index() == 2


def test_truncation_below_the_persisted_boundary_restarts_the_unstable_part():
    st = MemoryStorage()
    st.append(ents([1, 1, 1]))
    lg = RaftLog(st)
    assert lg.persisted_index == 3
    assert lg.maybe_append(1, 1, 0, ents([2, 2], start=2)) == 3
    assert lg.unstable_offset == 2 and lg.persisted_index == 1
    assert [e.term for e in lg.entries(1, 4)] == [1, 2, 2]
    assert lg.unstable_to_hand_out() == ents([2, 2], start=2)


def test_stable_to_ignores_entries_replaced_since_they_were_handed_out():
    lg = RaftLog(MemoryStorage())
    lg.append(ents([1, 1, 1]))
    lg.handed_to = 3
    lg.maybe_append(1, 1, 0, ents([2, 2], start=2))  # replaces 2 and 3
    lg.stable_to(3, 1)  # the old entry 3 (term 1) was persisted: not the current one
    assert lg.persisted_index == 0
    lg.stable_to(1, 1)
    assert lg.persisted_index == 1


def test_committed_entries_are_handed_out_only_once_persisted():
    st = MemoryStorage()
    lg = RaftLog(st)
    lg.append(ents([1, 1]))
    lg.commit_to(2)
    assert lg.next_committed(None) == []
    st.append(ents([1]))  # the shell persisted entry 1
    lg.stable_to(1, 1)
    assert [e.index for e in lg.next_committed(None)] == [1]


def test_inflights_ring_frees_in_order_and_wraps():
    inf = Inflights(3)
    for i in (5, 7, 9):
        inf.add(i, 10)
    assert inf.full() and inf.bytes == 30
    with pytest.raises(OverflowError):
        inf.add(11, 1)
    inf.free_le(7)
    assert inf.count == 1 and not inf.full()
    inf.add(11, 1)
    inf.add(13, 1)
    inf.free_first()
    assert inf.count == 2
    inf.free_le(100)
    assert inf.count == 0 and inf.bytes == 0


def test_inflights_byte_limit():
    inf = Inflights(10, max_bytes=100)
    inf.add(1, 60)
    assert not inf.full()
    inf.add(2, 60)
    assert inf.full()


def test_stable_tracking_is_not_fooled_by_an_entry_rewritten_back_to_its_term():
    # Issue 13, defect 2 (the ABA schedule etcd-io/raft documents): a follower's entry 1 goes
    # 1@3 -> 1@4 -> 1@3 in three Readies before the first fsync is reported. Once the first two
    # are durable, the disk holds 1@4: index 1 must not count as persisted, nor be applied.
    storage = MemoryStorage()
    core = RaftCore(1, RaftConfig(), random.Random(0), peers=[2, 3, 4, 5], storage=storage)
    readies = []
    for leader, term, commit in ((2, 3, 0), (3, 4, 0), (4, 5, 1)):
        entry_term = 4 if term == 4 else 3
        core.step(Message(MessageType.APPEND, 1, leader, term, entries=(Entry(entry_term, 1, 0, b""),),
                          commit=commit))
        rd = core.ready()
        assert [(e.index, e.term) for e in rd.entries] == [(1, entry_term)]
        readies.append(rd)
        core.advance(rd)
    assert core.commit_index == 1
    for rd in readies[:2]:  # the shell persists the first two, in order
        storage.append(rd.entries)
        core.on_persisted(rd.number)
    assert storage.term(1) == 4
    assert core.log.persisted_index == 0
    if core.has_ready():
        rd = core.ready()
        assert not rd.committed_entries, "1@4 from the disk would be applied"
        core.advance(rd)
    storage.append(readies[2].entries)
    core.on_persisted(readies[2].number)
    assert core.log.persisted_index == 1
    rd = core.ready()
    assert [(e.index, e.term) for e in rd.committed_entries] == [(1, 3)]
