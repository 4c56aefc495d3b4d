"""Process-level faults on a running cluster, with clients riding through each:

* SIGSTOP of the leader: the others elect a new leader and go on; SIGCONT brings the old one
  back as a follower; every acknowledged write is there exactly once;
* a full disk on one follower (a real tmpfs too small for it): that follower crash-stops,
  exiting non-zero and naming the error, while the other two go on serving;
* kill -9 of a follower while a snapshot goes in: it restarts and catches up whole.

Through each fault a :class:`~dengine.testing.kv_history.KvHistoryWorkload` runs puts,
compare-and-sets and linearizable reads on shared keys; the history of what its clients saw
(including calls whose outcome is unknown) must be linearizable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest


def assert_linearizable(history) -> None:
    result = history.check()
    assert result.ok, f"{history.summary()}\n{result.describe()}"
    print(history.summary())


def test_sigstop_of_the_leader_and_back(cluster_factory, run, writer_cls, history_cls):
    lc = cluster_factory(3)

    async def go():
        async with lc.client() as c, lc.client(timeout=20) as wc, lc.client() as hc:
            old = lc.nodes[(await lc.wait_leader(c)).id]
            writer = writer_cls(wc, concurrency=4).start()
            # calls shorter than the client's 2 s attempt timeout: those caught at the stopped
            # leader end with their outcome unknown, which the checker must then place
            history = history_cls([hc], workers=4, seed=1, timeout=1.0).start()
            await writer.wait_acked(50)
            await history.wait_ok(30)
            old.proc.send_signal(signal.SIGSTOP)
            try:
                others = [i for i in lc.nodes if i != old.id]
                new = await lc.wait_leader(c, among=others, not_id=old.id)
                assert new.id != old.id
                before = len(writer.acked)
                await writer.wait_acked(before + 50, timeout=30)
                await history.wait_ok(30, timeout=30)
            finally:
                old.proc.send_signal(signal.SIGCONT)
            before = len(writer.acked)
            await writer.wait_acked(before + 50, timeout=30)
            await history.wait_ok(30, timeout=30)
            await writer.stop()
            await history.stop()
            await history.read_all(hc)
            await writer.check_all_readable(c)
            await lc.wait_leader(c)  # all three agree again, the old leader a follower
            assert old.running
        # the stop was felt: calls caught there failed (reads) or ended unknown (writes)
        assert history.counts["unknown"] + history.counts["failed"] > 0, history.summary()
        assert_linearizable(history)

    run(go)


@pytest.fixture
def mounts():
    made: list[str] = []
    yield made
    for path in made:
        subprocess.run(["umount", "-l", path], capture_output=True)


def test_a_full_disk_stops_one_follower_and_the_rest_go_on(cluster_factory, run, history_cls,
                                                            mounts):
    lc = cluster_factory(3, start=False, storage={"engine": "file", "segment_bytes": 1 << 20})
    victim = lc.nodes[3]
    victim.data_dir.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", f"tmpfs-{uuid.uuid4().hex[:6]}",
                        str(victim.data_dir)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    mounts.append(str(victim.data_dir))
    lc.start()
    value = os.urandom(200 * 1024)

    async def go():
        async with lc.client(timeout=20) as c, lc.client() as hc:
            await lc.wait_leader(c)
            history = history_cls([hc], workers=4, seed=2).start()
            acked = {}
            deadline = time.monotonic() + 60
            i = 0
            while victim.running:
                assert time.monotonic() < deadline, victim.log_tail()
                key = b"full/%05d" % i
                await c.put(key, value)
                acked[key] = value
                i += 1
            code = victim.wait_exit(5)
            assert code not in (0, None)
            log = victim.log_path.read_text(errors="replace")
            assert "No space" in log or "ENOSPC" in log, victim.log_tail()
            for j in range(20):  # the other two (a quorum) go on
                await c.put(b"after/%d" % j, b"x")
            await history.wait_ok(30)
            await history.stop()
            await history.read_all(hc)
            got = await c.get_many(list(acked)[-20:])
            assert all(got[k].value == acked[k] and got[k].version == 1 for k in got)
            assert len(got) == min(20, len(acked))
        assert_linearizable(history)

    run(go)


@pytest.mark.slow
def test_kill_9_while_a_snapshot_goes_in_then_it_catches_up(cluster_factory, run, history_cls):
    lc = cluster_factory(3, raft={"snapshot_interval_entries": 100, "compaction_tail_entries": 10})
    value = b"v" * (16 * 1024)

    async def go():
        import asyncio

        async with lc.client(timeout=20) as c, lc.client() as hc:
            leader = lc.nodes[(await lc.wait_leader(c)).id]
            history = history_cls([hc], workers=4, seed=3).start()
            down = lc.nodes[next(i for i in lc.nodes if i != leader.id)]
            down.kill()
            keys = [b"snap/%04d" % j for j in range(300)]
            for i in range(0, len(keys), 50):
                await asyncio.gather(*(c.put(k, value) for k in keys[i : i + 50]))
            await leader.wait_log("log compacted")
            kills = 0
            for delay in (0.0, 0.05, 0.2):  # kill at different points of transfer and install
                seen = leader.log_count("sending snapshot")
                down.start()
                try:
                    await leader.wait_log("sending snapshot", seen + 1, timeout=10)
                except AssertionError:
                    break  # the last kill came after the install finished: none is needed
                await asyncio.sleep(delay)
                down.kill()  # SIGKILL: whatever it was doing with the snapshot
                kills += 1
            assert kills >= 1
            if not down.running:
                down.start()
            await history.wait_ok(30)
            await history.stop()
            await history.read_all(hc)
            top = (await c.status()).commit_index
            await lc.wait_applied(c, down.id, top, timeout=30)
            got = {kv.key: kv.value async for kv in c.scan_iter(
                prefix=b"snap/", consistency="serializable", endpoint=down.address)}
            assert got == dict.fromkeys(keys, value)
            # the restarted follower's own (serializable, once caught up) view agrees too
            for key in history.keys:
                mine = await c.get(key, consistency="serializable", endpoint=down.address)
                theirs = await c.get(key)
                assert (mine and mine.value) == (theirs and theirs.value), key
        assert_linearizable(history)

    run(go)
