"""The two peer transports alone: two transports in one uvloop process, node 2 answering every
message of node 1. ``--window 1``: a ping-pong (one message in flight); ``--window 100``: a
closed loop with 100 in flight (append messages of 300-byte entries). Prints messages per second
and CPU per message (all threads of the process), alternating grpc and tcp ``--rounds`` times.

    PYTHONPATH=$PWD python benches/peer_transport_hop.py --window 1 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time

import structlog
import uvloop

from dengine.config import build_config
from dengine.raft.messages import Message, MessageType
from dengine.raft.types import Entry
from dengine.transport import GrpcTransport, TcpTransport


def config(node_id: int, kind: str, tmp: str):
    return build_config({
        "cluster": {"cluster_id": "hop", "node_id": node_id, "listen_addr": "127.0.0.1:0",
                    "initial_members": {1: "127.0.0.1:1", 2: "127.0.0.1:2"},
                    "data_dir": f"{tmp}/{node_id}"},
        "network": {"peer_transport": kind},
    })


async def one(kind: str, window: int, n: int) -> tuple[float, float]:
    tmp = tempfile.mkdtemp(prefix="dengine-hop-")
    cls = TcpTransport if kind == "tcp" else GrpcTransport
    got: asyncio.Queue[Message] = asyncio.Queue()
    ts: dict[int, GrpcTransport] = {}

    def answer(m: Message) -> None:
        ts[2].send([Message(MessageType.APPEND_RESP, to=1, from_=2, term=1, index=m.index)])

    ts[1] = cls(config(1, kind, tmp), on_message=got.put_nowait)
    ts[2] = cls(config(2, kind, tmp), on_message=answer)
    for t in ts.values():
        await t.start()
    ts[1].set_peer(2, ts[2].address)
    ts[2].set_peer(1, ts[1].address)
    entries = (Entry(1, 1, 0, b"v" * 300),)

    def msg(i: int) -> Message:
        return Message(MessageType.APPEND, to=2, from_=1, term=1, index=i, entries=entries)

    for _ in range(300):  # warm up until both links are up
        ts[1].send([msg(0)])
        try:
            await asyncio.wait_for(got.get(), 0.05)
        except TimeoutError:
            pass
    await asyncio.sleep(0.2)
    while not got.empty():
        got.get_nowait()
    c0, t0 = time.process_time(), time.perf_counter()
    sent = done = 0
    for _ in range(window):
        ts[1].send([msg(sent)])
        sent += 1
    while done < n:
        await got.get()
        done += 1
        if sent < n:
            ts[1].send([msg(sent)])
            sent += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    for t in ts.values():
        await t.stop()
    return n / wall, 1e6 * cpu / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--window", type=int, default=1)
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for rnd in range(1, args.rounds + 1):
        for kind in ("grpc", "tcp") if rnd % 2 else ("tcp", "grpc"):
            rate, cpu = uvloop.run(one(kind, args.window, args.messages))
            print(f"round {rnd} {kind:<4} window {args.window}: {rate:>8,.0f} msgs/s, "
                  f"{cpu:5.1f} us CPU/msg, load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
