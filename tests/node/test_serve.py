"""``dengine serve`` as a real process: it serves, and SIGTERM stops it cleanly (exit 0)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import grpc

from dengine.v1 import client_pb2 as pb
from dengine.v1 import client_pb2_grpc as pbg


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _put_get(address: str) -> tuple:
    async with grpc.aio.insecure_channel(address) as ch:
        kv = pbg.KvStub(ch)
        deadline = time.monotonic() + 15
        while True:
            try:
                put = await kv.Put(pb.PutRequest(key=b"k", value=b"v"), timeout=2)
                if not put.HasField("error"):
                    break
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the node never accepted a write")
            await asyncio.sleep(0.1)
        got = await kv.Get(pb.GetRequest(key=b"k"), timeout=2)
        return put.revision, got.kv.value


def test_serve_runs_a_node_and_stops_on_sigterm(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DENGINE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    cmd = [sys.executable, "-m", "dengine", "serve", "--cluster.node-id", "1",
           "--cluster.initial-members", f"1={address}", "--cluster.data-dir",
           str(tmp_path / "data"), "--raft.election-ms", "300", "--raft.lease-ms", "200",
           "--raft.heartbeat-ms", "50"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        revision, value = asyncio.run(_put_get(address))
        assert revision > 1 and value == b"v"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "node stopping" in out and "node stopped" in out
    assert "role changed" in out  # role changes are logged at info

    # Restarted on its directory, it has its data; SIGINT stops it as cleanly.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        revision2, value = asyncio.run(_put_get(address))
        assert revision2 > revision and value == b"v"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "storage recovered" in out and "node stopped" in out

    # Restarted on the same directory with another cluster id: refused, with the reason.
    cmd[cmd.index("serve") + 1:cmd.index("serve") + 1] = ["--cluster.cluster-id", "other"]
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0
    assert "cluster id" in bad.stderr


def test_serve_moves_what_lives_at_start_out_of_the_collectors_reach():
    """After start, ``serve`` freezes what is alive (gc.freeze): full collections then walk only
    what was made since, not the modules, gRPC and the node's own structures."""
    import gc

    from dengine.node import serve as serve_mod

    assert "settle_garbage_collector" in serve_mod.serve.__code__.co_names  # serve calls it
    before = gc.get_freeze_count()
    try:
        serve_mod.settle_garbage_collector()
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
