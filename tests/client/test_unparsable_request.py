"""A node answers bytes that do not parse as the request with INVALID_ARGUMENT (gRPC's own
answer is UNKNOWN), and keeps serving."""

from __future__ import annotations

import grpc
import pytest

from dengine import errors as E
from dengine.client import Client
from dengine.transport import status


def test_garbage_to_a_unary_method_is_invalid_argument(run_uvloop, real_cluster):
    async def go():
        async with real_cluster(1) as rc, Client(rc.endpoints, timeout=10) as c:
            await c.put(b"before", b"1")
            async with grpc.aio.insecure_channel(rc.endpoints[0]) as ch:
                for method in ("Kv/Put", "Kv/Get", "Cluster/Status"):
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await ch.unary_unary(f"/dengine.v1.{method}")(b"\xff\xff\xff")
                    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
                    assert isinstance(status.from_rpc_error(info.value), E.InvalidArgument)
            await c.put(b"after", b"2")
            assert (await c.get(b"after")).value == b"2"

    run_uvloop(go)
