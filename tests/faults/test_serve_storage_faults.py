"""``dengine serve`` on a failing disk: it stops acknowledging and the process exits non-zero
within seconds naming the error, so a supervisor restarts it (the issue: ``Node.stop()`` raised
before it marked itself stopped and the process never exited).

Both log engines, with the test-only fsync fault switch (``"sync_fault"`` in the node's
``FAULTS`` file) and with a real tmpfs too small for the data (slow).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import grpc
import pytest

from dengine.v1 import client_pb2 as pb
from dengine.v1 import client_pb2_grpc as pbg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(data_dir: str, engine: str, env: dict, *extra: str) -> tuple[subprocess.Popen, str]:
    address = f"127.0.0.1:{_free_port()}"
    cmd = [sys.executable, "-m", "dengine", "serve", "--cluster.node-id", "1",
           "--cluster.initial-members", f"1={address}", "--cluster.data-dir", data_dir,
           "--storage.engine", engine, "--network.fault-injection", "true",
           "--raft.election-ms", "300", "--raft.lease-ms", "200", "--raft.heartbeat-ms", "50",
           *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    return proc, address


async def _wait_writable(kv: pbg.KvStub) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            put = await kv.Put(pb.PutRequest(key=b"k", value=b"v"), timeout=2)
            if not put.HasField("error"):
                return
        except grpc.aio.AioRpcError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the node never accepted a write")
        await asyncio.sleep(0.1)


async def _put_until_refused(kv: pbg.KvStub, value: bytes, limit: int) -> int:
    """Put until the node refuses or stops answering; the number acknowledged."""
    acked = 0
    for i in range(limit):
        try:
            put = await kv.Put(pb.PutRequest(key=b"k%d" % i, value=value), timeout=3)
        except grpc.aio.AioRpcError:
            return acked
        if put.HasField("error"):
            return acked
        acked += 1
    return acked


def _finish(proc: subprocess.Popen, within_s: float) -> tuple[int, str, float]:
    t0 = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=within_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"dengine serve did not exit within {within_s}s:\n{out[-3000:]}") from None
    return proc.returncode, out, time.monotonic() - t0


@pytest.mark.parametrize("engine", ["file", "rocksdb"])
def test_a_failing_fsync_makes_serve_exit_non_zero_naming_it(tmp_path, proc_env, engine):
    data = str(tmp_path / "data")
    proc, address = _start(data, engine, proc_env)

    async def run() -> int:
        async with grpc.aio.insecure_channel(address) as ch:
            kv = pbg.KvStub(ch)
            await _wait_writable(kv)
            tmp = os.path.join(data, "FAULTS.tmp")
            with open(tmp, "w") as f:
                json.dump({"sync_fault": "EIO"}, f)
            os.replace(tmp, os.path.join(data, "FAULTS"))
            await asyncio.sleep(0.3)  # the node polls the file every 50 ms
            return await _put_until_refused(kv, b"x", 50)

    try:
        acked = asyncio.run(run())
        code, out, _ = _finish(proc, 15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert acked == 0, out[-3000:]  # nothing is acknowledged once the fsync fails
    assert code not in (0, None), out[-3000:]
    assert "EIO" in out and "StorageIOError" in out, out[-3000:]
    assert "node stopped" in out


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["file", "rocksdb"])
def test_a_full_tmpfs_makes_serve_exit_non_zero_naming_it(tmpfs, proc_env, engine):
    with tmpfs("24m") as root:
        data = os.path.join(root, "data")
        proc, address = _start(data, engine, proc_env, "--storage.segment-bytes", str(1 << 20))

        async def run() -> int:
            async with grpc.aio.insecure_channel(address) as ch:
                kv = pbg.KvStub(ch)
                await _wait_writable(kv)
                return await _put_until_refused(kv, os.urandom(256 << 10), 1000)

        try:
            acked = asyncio.run(run())
            code, out, _ = _finish(proc, 20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert 0 < acked < 1000, out[-3000:]
        assert code not in (0, None), out[-3000:]
        assert "No space" in out or "ENOSPC" in out, out[-3000:]


def test_a_second_serve_on_a_live_data_directory_is_refused_naming_the_pid(tmp_path, proc_env):
    data = str(tmp_path / "data")
    first, address = _start(data, "file", proc_env)

    async def writable() -> None:
        async with grpc.aio.insecure_channel(address) as ch:
            await _wait_writable(pbg.KvStub(ch))

    try:
        asyncio.run(writable())
        second, _ = _start(data, "file", proc_env)
        code, out, _ = _finish(second, 30)
        assert code not in (0, None), out[-3000:]
        assert f"in use by process {first.pid}" in out, out[-3000:]
        assert first.poll() is None  # the owner goes on serving, its WAL untouched
        asyncio.run(writable())
    finally:
        first.terminate()
        first.communicate(timeout=20)
    assert first.returncode == 0
