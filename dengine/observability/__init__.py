"""Logs (structlog), and later metrics and tracing. Library code is handed its logger."""

from dengine.observability.logging import configure_logging, node_logger

__all__ = ["configure_logging", "node_logger"]
