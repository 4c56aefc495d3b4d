"""Optional OpenTelemetry tracing: one span per client request, a no-op without OpenTelemetry.

Theory of operation
-------------------
dengine depends only on ``opentelemetry-api`` (the ``tracing`` extra) and never configures it:
the application installs an SDK ``TracerProvider`` and exporters as it likes. Until it does,
the API hands out non-recording spans; :meth:`RequestTracing.start` checks for that first and
returns None, so a node without tracing pays one attribute lookup per request. When it records,
each request handled by a node (gRPC unary, Batch stream or embedded client alike, since all go
through :class:`~dengine.node.service.RequestHandler`) gets a span ``dengine.<method>`` that
lasts from the request's arrival to its answer: for a write that is propose, commit and apply on
the leader. Attributes: the node id, the method, the answer's status, and for writes the log
index (``dengine.index``, the revision) and the node's term when it answered (``dengine.term``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["RequestTracing", "request_tracing"]


def request_tracing(node: Any) -> RequestTracing | None:
    """Tracing for ``node``'s requests, or None when OpenTelemetry is not installed."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return RequestTracing(node, trace)


class RequestTracing:
    """Starts and ends one span per request; see the module docstring."""

    def __init__(self, node: Any, trace: Any) -> None:
        self._node = node
        self._trace = trace
        self._tracer = trace.get_tracer("dengine")
        self._idle = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)

    def start(self, method: str) -> Any | None:
        """A started span, or None when no SDK provider is installed (nothing would record)."""
        if isinstance(self._trace.get_tracer_provider(), self._idle):
            return None
        return self._tracer.start_span(
            f"dengine.{method}", kind=self._trace.SpanKind.SERVER,
            attributes={"dengine.node_id": self._node.node_id, "dengine.method": method})

    def use(self, span: Any) -> Any:
        """Make ``span`` the current span while the request runs (child spans nest under it)."""
        return self._trace.use_span(span, end_on_exit=False)

    def end(self, span: Any, response: Any) -> None:
        code = response.error.code if response.HasField("error") else 0
        span.set_attribute("dengine.status", _code_name(code))
        revision = getattr(response, "revision", 0)
        if revision:
            span.set_attribute("dengine.index", revision)
            core = getattr(self._node, "core_if_built", None)
            if core is not None:
                span.set_attribute("dengine.term", core.term)
        if code:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end()


def _code_name(code: int) -> str:
    try:
        from dengine.v1 import client_pb2

        return client_pb2.ErrorCode.Name(code)
    except (ImportError, ValueError):
        return str(code)
