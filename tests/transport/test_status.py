"""dengine errors <-> gRPC status and client.proto Error, both ways, and over a real call."""

from __future__ import annotations

import grpc
import pytest

from dengine import errors as E
from dengine.transport import status
from dengine.v1 import client_pb2

CASES = [
    (E.NotLeader(2, "127.0.0.1:7002"), client_pb2.NOT_LEADER, grpc.StatusCode.FAILED_PRECONDITION),
    (E.NotLeader(), client_pb2.NOT_LEADER, grpc.StatusCode.FAILED_PRECONDITION),
    (E.Unavailable("no quorum"), client_pb2.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
    (E.OperationTimeout("put", 2.0), client_pb2.TIMEOUT, grpc.StatusCode.DEADLINE_EXCEEDED),
    (E.ConfigError("raft.tick_ms", 0, ">= 1"), client_pb2.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT),
    (E.DecodeError("command", "short"), client_pb2.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT),
    (E.InvalidArgument("empty key"), client_pb2.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT),
    (E.PayloadTooLarge(5000, 4096, "value"), client_pb2.PAYLOAD_TOO_LARGE, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (E.ClusterMismatch("a", "b"), client_pb2.CLUSTER_MISMATCH, grpc.StatusCode.PERMISSION_DENIED),
    (E.ConfChangeError("last voter"), client_pb2.CONF_CHANGE_REFUSED, grpc.StatusCode.FAILED_PRECONDITION),
    (E.ProposalDropped("transfer"), client_pb2.PROPOSAL_DROPPED, grpc.StatusCode.ABORTED),
    (E.SessionExpired(7, 42), client_pb2.SESSION_EXPIRED, grpc.StatusCode.FAILED_PRECONDITION),
    (E.QuotaExceeded(9000, 8192, 2), client_pb2.NO_SPACE, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (E.QuotaExceeded(9000, 8192), client_pb2.NO_SPACE, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (E.Corruption("/x", 3, "crc"), client_pb2.INTERNAL, grpc.StatusCode.INTERNAL),
    (RuntimeError("boom"), client_pb2.INTERNAL, grpc.StatusCode.INTERNAL),
]  # fmt: skip


@pytest.mark.parametrize("exc, code, grpc_code", CASES, ids=lambda c: type(c).__name__)
def test_codes(exc, code, grpc_code):
    assert status.error_code(exc) == code
    assert status.grpc_code(exc) == grpc_code
    err = status.to_proto(exc)
    assert err.code == code and err.message == str(exc)


@pytest.mark.parametrize("exc, code, _", CASES, ids=lambda c: type(c).__name__)
def test_round_trip_through_the_error_message(exc, code, _):
    back = status.from_proto(client_pb2.Error.FromString(status.to_proto(exc).SerializeToString()))
    assert isinstance(back, E.DengineError)
    assert status.error_code(back) == code
    if isinstance(exc, E.DengineError) and not isinstance(exc, E.ConfigError | E.DecodeError):
        assert type(back) is (type(exc) if code != client_pb2.INTERNAL else E.ServerError)


def test_round_trip_keeps_the_fields():
    back = status.from_proto(status.to_proto(E.NotLeader(3, "h:7003")))
    assert (back.leader_id, back.leader_addr) == (3, "h:7003")
    back = status.from_proto(status.to_proto(E.NotLeader()))
    assert (back.leader_id, back.leader_addr) == (None, None)
    back = status.from_proto(status.to_proto(E.PayloadTooLarge(5000, 4096)))
    assert (back.size, back.limit) == (5000, 4096)
    back = status.from_proto(status.to_proto(E.ClusterMismatch("a", "b")))
    assert (back.expected, back.got) == ("a", "b") and str(back) == str(E.ClusterMismatch("a", "b"))
    back = status.from_proto(status.to_proto(E.Unavailable("no quorum")))
    assert back.reason == "no quorum" and str(back) == "unavailable: no quorum"
    back = status.from_proto(status.to_proto(RuntimeError("boom")))
    assert isinstance(back, E.ServerError) and back.code == "INTERNAL" and "boom" in str(back)
    assert status.from_proto(client_pb2.Error()) is None


def test_codes_without_a_type_come_back_as_server_errors():
    for code in (client_pb2.NOT_FOUND, client_pb2.COMPARE_FAILED, 99):
        back = status.from_proto(client_pb2.Error(code=code, message="m"))
        assert isinstance(back, E.ServerError)


def test_every_error_code_has_a_grpc_status():
    for code in client_pb2.ErrorCode.values():
        assert code in status._GRPC_OF


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code, details, trailing=()):
        self._code, self._details, self._trailing = code, details, trailing

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailing


def test_bare_grpc_statuses():
    cases = {
        grpc.StatusCode.UNAVAILABLE: E.Unavailable,
        grpc.StatusCode.DEADLINE_EXCEEDED: E.OperationTimeout,
        grpc.StatusCode.INVALID_ARGUMENT: E.InvalidArgument,
        grpc.StatusCode.PERMISSION_DENIED: E.ClusterMismatch,
        grpc.StatusCode.UNIMPLEMENTED: E.ServerError,
    }
    for code, cls in cases.items():
        assert type(status.from_rpc_error(_FakeRpcError(code, "d"))) is cls
    # gRPC's own size refusal carries the numbers in its details.
    err = status.from_rpc_error(
        _FakeRpcError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "Received message larger than max (1048600 vs. 262144)",
        )
    )
    assert isinstance(err, E.PayloadTooLarge) and (err.size, err.limit) == (1048600, 262144)
    # A garbled trailing Error falls back to the status code.
    garbled = _FakeRpcError(
        grpc.StatusCode.UNAVAILABLE, "d", ((status.ERROR_METADATA_KEY, b"\xff\xff"),)
    )
    assert isinstance(status.from_rpc_error(garbled), E.Unavailable)


def test_over_a_real_call(run):
    """A server aborts with NotLeader; the client gets NotLeader with the hint back."""

    async def body():
        async def handler(request: bytes, context):
            exc = {
                b"leader": E.NotLeader(2, "127.0.0.1:7002"),
                b"big": E.PayloadTooLarge(9, 8, "value"),
            }[request]
            await status.abort(context, exc)

        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "test.Echo", {"Fail": grpc.unary_unary_rpc_method_handler(handler)}
                )
            ]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                fail = ch.unary_unary("/test.Echo/Fail")
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await fail(b"leader")
                assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                err = status.from_rpc_error(info.value)
                assert isinstance(err, E.NotLeader)
                assert (err.leader_id, err.leader_addr) == (2, "127.0.0.1:7002")
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await fail(b"big")
                err = status.from_rpc_error(info.value)
                assert isinstance(err, E.PayloadTooLarge) and (err.size, err.limit) == (9, 8)
        finally:
            await server.stop(None)

    run(body)


async def _serve_aborts(errors: dict[bytes, BaseException]) -> tuple[grpc.aio.Server, str]:
    """A server whose one method aborts with ``errors[request]`` through :func:`status.abort`."""

    async def handler(request: bytes, context):
        await status.abort(context, errors[request])

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Fail": grpc.unary_unary_rpc_method_handler(handler)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def test_session_expired_comes_back_as_itself(run):
    """Not INTERNAL/ServerError: the client must learn the outcome is unknown, with the ids."""

    async def body():
        server, address = await _serve_aborts({b"x": E.SessionExpired(7, 42)})
        try:
            async with grpc.aio.insecure_channel(address) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await ch.unary_unary("/test.Echo/Fail")(b"x")
        finally:
            await server.stop(None)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        err = status.from_rpc_error(info.value)
        assert type(err) is E.SessionExpired
        assert (err.client_id, err.seq) == (7, 42)
        assert str(err) == str(E.SessionExpired(7, 42))

    run(body)


#: Errors that come back as their own type: their message must come back unchanged.
SAME_TYPE = [
    exc for exc, code, _ in CASES
    if isinstance(exc, E.DengineError) and code != client_pb2.INTERNAL
    and not isinstance(exc, E.ConfigError | E.DecodeError)
] + [
    E.OperationTimeout("scan"),
    E.OperationTimeout("get", 0.25),
    E.PayloadTooLarge(70, 64),
    E.ServerError("UNIMPLEMENTED", "no such method"),
]  # fmt: skip


def test_a_round_trip_over_a_real_call_keeps_the_message(run):
    """An aborted call's error decodes to the same message (advice said once), and a second
    trip changes nothing; errors of another type get that type's wording once, then stay."""

    async def body():
        others = [E.ConfigError("raft.tick_ms", 0, ">= 1"), RuntimeError("boom")]
        everything = SAME_TYPE + others
        errors = {str(i).encode(): exc for i, exc in enumerate(everything)}
        server, address = await _serve_aborts(errors)
        decoded = []
        try:
            async with grpc.aio.insecure_channel(address) as ch:
                fail = ch.unary_unary("/test.Echo/Fail")
                for key in errors:
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await fail(key)
                    decoded.append(status.from_rpc_error(info.value))
        finally:
            await server.stop(None)
        for exc, back in zip(everything, decoded, strict=True):
            if exc in SAME_TYPE:
                assert type(back) is type(exc) and str(back) == str(exc)
            again = status.from_proto(status.to_proto(back))
            assert type(again) is type(back) and str(again) == str(back)
        advice = "fix the request, retrying will not help"
        pairs = zip(everything, decoded, strict=True)
        invalid = next(b for e, b in pairs if type(e) is E.InvalidArgument)
        assert str(invalid).count(advice) == 1

    run(body)


def test_payload_too_large_keeps_the_setting_to_raise():
    exc = E.PayloadTooLarge(2_000_000, 1_048_576, "request", "raft.max_msg_bytes")
    back = status.from_proto(status.to_proto(exc))
    assert isinstance(back, E.PayloadTooLarge) and back.setting == "raft.max_msg_bytes"
    assert str(back) == str(exc) and "raise raft.max_msg_bytes" in str(back)


class _Failed(grpc.RpcError):
    """A failed call as grpc hands it over: code, details, trailing metadata."""

    def __init__(self, code, details, trailing):
        self._c, self._d, self._t = code, details, trailing

    def code(self):
        return self._c

    def details(self):
        return self._d

    def trailing_metadata(self):
        return self._t


def test_a_unary_status_carries_a_google_rpc_error_detail():
    from google.rpc import error_details_pb2, status_pb2

    code, details, trailing = status.status_of_error(
        status.to_proto(E.NotLeader(2, "10.0.0.2:7001")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not the leader" in details
    meta = dict(trailing)
    assert (meta["dengine-leader-id"], meta["dengine-leader-addr"]) == ("2", "10.0.0.2:7001")
    rich = status_pb2.Status.FromString(meta["grpc-status-details-bin"])
    assert rich.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    info = error_details_pb2.ErrorInfo()
    assert rich.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("NOT_LEADER", "dengine.v1")
    assert dict(info.metadata) == {"leader_id": "2", "leader_addr": "10.0.0.2:7001"}
    # A client that reads only the standard detail (no dengine-error-bin) gets the same error.
    only_rich = [(k, v) for k, v in trailing if k == "grpc-status-details-bin"]
    err = status.from_rpc_error(_Failed(code, details, only_rich))
    assert isinstance(err, E.NotLeader) and (err.leader_id, err.leader_addr) == (2, "10.0.0.2:7001")


@pytest.mark.parametrize("exc", [E.PayloadTooLarge(9, 8, "request", "raft.max_msg_bytes"),
                                 E.InvalidArgument("the key is empty"),
                                 E.Unavailable("no quorum")])
def test_every_unary_error_round_trips_through_its_status(exc):
    code, details, trailing = status.status_of_error(status.to_proto(exc))
    assert code == status.grpc_code(exc) and code != grpc.StatusCode.OK
    back = status.from_rpc_error(_Failed(code, details, trailing))
    assert type(back) is type(exc) and str(back) == str(exc)
