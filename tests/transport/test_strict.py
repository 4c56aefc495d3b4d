"""add_strict: a unary request whose bytes do not parse is refused with INVALID_ARGUMENT (gRPC
itself answers UNKNOWN), a good one is served as before, streams are left as generated."""

from __future__ import annotations

import grpc
import pytest

from dengine import errors as E
from dengine.transport import status
from dengine.transport.strict import add_strict
from dengine.v1 import client_pb2 as pb
from dengine.v1 import client_pb2_grpc as pbg

GARBAGE = [b"\xff\xff\xff", b"\x0a\x05ab"]  # a bad tag; a field longer than the bytes left


class _Kv(pbg.KvServicer):
    async def Put(self, request, context):
        return pb.PutResponse(revision=len(request.key))

    def Get(self, request, context):  # a plain function works too
        return pb.GetResponse(found=True, kv=pb.KeyValue(key=request.key))

    async def Batch(self, request_iterator, context):
        async for batch in request_iterator:
            yield pb.ClientResponseBatch(
                responses=[pb.ClientResponse(request_id=r.request_id) for r in batch.requests]
            )


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "as_generated"])
def test_unparsable_unary_requests_are_invalid_argument(run, strict):
    async def body():
        server = grpc.aio.server()
        if strict:
            add_strict(pbg.add_KvServicer_to_server, _Kv(), server)
        else:
            pbg.add_KvServicer_to_server(_Kv(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        codes = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = pbg.KvStub(ch)
                assert (await stub.Put(pb.PutRequest(key=b"abc"))).revision == 3
                assert (await stub.Get(pb.GetRequest(key=b"k"))).kv.key == b"k"
                call = stub.Batch()
                await call.write(pb.ClientRequestBatch(requests=[pb.ClientRequest(request_id=7)]))
                assert (await call.read()).responses[0].request_id == 7
                await call.done_writing()
                for method in ("Put", "Get"):
                    raw = ch.unary_unary(f"/dengine.v1.Kv/{method}")
                    for garbage in GARBAGE:
                        with pytest.raises(grpc.aio.AioRpcError) as info:
                            await raw(garbage)
                        codes.append(info.value.code())
                        if strict:
                            err = status.from_rpc_error(info.value)
                            assert isinstance(err, E.InvalidArgument)
                            assert f"/dengine.v1.Kv/{method}: the request does not parse" in str(err)
                assert (await stub.Put(pb.PutRequest(key=b"ab"))).revision == 2
        finally:
            await server.stop(None)
        expected = grpc.StatusCode.INVALID_ARGUMENT if strict else grpc.StatusCode.UNKNOWN
        assert codes == [expected] * 4

    run(body)
