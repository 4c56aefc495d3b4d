"""The CPU one hop costs: a grpc.aio bidi stream against a length-prefixed asyncio TCP stream.

Both ends run in this process on uvloop; each round trip is four message operations (client
write, server read, server write, client read). Prints CPU (every thread of the process) and
wall time per round trip, twice per transport, so the ratio can be read within one run.

    python benches/grpc_hop.py [ROUND_TRIPS]
"""

import asyncio
import contextlib
import resource
import sys
import time

import grpc
import uvloop

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
PAYLOAD = b"x" * 300


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def grpc_pingpong():
    def ident(b):
        return b

    async def echo(it, ctx):
        async for m in it:
            yield m
    handler = grpc.method_handlers_generic_handler("t.E", {
        "S": grpc.stream_stream_rpc_method_handler(echo, ident, ident)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    call = ch.stream_stream("/t.E/S", request_serializer=ident, response_deserializer=ident)()
    for _ in range(100):
        await call.write(PAYLOAD)
        await call.read()
    c0, t0 = cpu(), time.perf_counter()
    for _ in range(N):
        await call.write(PAYLOAD)
        await call.read()
    c1, t1 = cpu(), time.perf_counter()
    await call.done_writing()
    await ch.close()
    await server.stop(0)
    return (c1 - c0) / N * 1e6, (t1 - t0) / N * 1e6


async def tcp_pingpong():
    async def echo(r, w):
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                h = await r.readexactly(4)
                b = await r.readexactly(int.from_bytes(h, "big"))
                w.write(h + b)
    srv = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    msg = len(PAYLOAD).to_bytes(4, "big") + PAYLOAD
    async def one():
        w.write(msg)
        h = await r.readexactly(4)
        await r.readexactly(int.from_bytes(h, "big"))
    for _ in range(100):
        await one()
    c0, t0 = cpu(), time.perf_counter()
    for _ in range(N):
        await one()
    c1, t1 = cpu(), time.perf_counter()
    w.close()
    srv.close()
    return (c1 - c0) / N * 1e6, (t1 - t0) / N * 1e6


async def main():
    for name, f in (("grpc.aio bidi stream", grpc_pingpong), ("asyncio TCP stream", tcp_pingpong),
                    ("grpc.aio bidi stream", grpc_pingpong), ("asyncio TCP stream", tcp_pingpong)):
        c, w = await f()
        print(f"{name:22s} round trip: cpu {c:7.1f} us  wall {w:7.1f} us", flush=True)


if __name__ == "__main__":
    uvloop.run(main())
