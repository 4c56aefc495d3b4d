"""Register a generated gRPC servicer so that a unary request that does not parse is refused
with INVALID_ARGUMENT.

gRPC answers a request its deserializer cannot parse with UNKNOWN ("Unexpected DecodeError"),
which reads like a server fault. :func:`add_strict` registers the servicer the way the generated
``add_<Service>Servicer_to_server`` does, with two changes to each unary-unary handler: the
request deserializer returns a :class:`_Unparsable` marker instead of raising, and the method
answers that marker with :class:`~dengine.errors.InvalidArgument` (status and trailing
``Error``, see :mod:`dengine.transport.status`). A request that parses costs one isinstance
check more. Streaming methods are left as generated.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import grpc

from dengine.errors import InvalidArgument
from dengine.transport.status import abort

__all__ = ["add_strict"]


class _Unparsable:
    """Stands for a request whose bytes did not parse; carries the parser's reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Recorder:
    """Takes the handlers a generated ``add_*_to_server`` function registers."""

    def __init__(self) -> None:
        self.registered: list[tuple[str, dict[str, Any]]] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers are also given to add_registered_method_handlers

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.registered.append((service, handlers))


def add_strict(add: Callable[[Any, Any], None], servicer: Any, server: Any) -> None:
    """``add(servicer, server)`` (a generated ``add_*Servicer_to_server``), with unparsable
    unary requests refused as INVALID_ARGUMENT."""
    recorder = _Recorder()
    add(servicer, recorder)
    if not recorder.registered:  # generated code of another shape: register it as it is
        add(servicer, server)
        return
    for service, handlers in recorder.registered:
        strict = {name: _strict(f"/{service}/{name}", h) for name, h in handlers.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, strict),))
        server.add_registered_method_handlers(service, strict)


def _strict(method: str, handler: Any) -> Any:
    if handler.unary_unary is None or handler.request_deserializer is None:
        return handler
    parse, behavior = handler.request_deserializer, handler.unary_unary

    def deserialize(raw: bytes) -> Any:
        try:
            return parse(raw)
        except Exception as e:  # noqa: BLE001 - any parse failure is the caller's bad input
            return _Unparsable(str(e))

    async def unary(request: Any, context: Any) -> Any:
        if isinstance(request, _Unparsable):
            await abort(context, InvalidArgument(f"{method}: the request does not parse "
                                                 f"({request.reason})"))  # fmt: skip
        result = behavior(request, context)
        return await result if inspect.isawaitable(result) else result

    return handler._replace(request_deserializer=deserialize, unary_unary=unary)
