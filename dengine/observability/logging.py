"""structlog setup for a node process, and the factory for the loggers handed to library code.

Theory of operation
-------------------
A process calls :func:`configure_logging` once, at startup (``dengine serve`` does, an
embedding program may do it or keep its own structlog setup). Library code never reaches for a
module-level logger: each component is given one, made by :func:`node_logger` and bound with the
stable keys ``node_id`` (and ``component``); the core adds ``term`` and ``role`` as they change.
Filtering by level happens before any event dict is built (structlog's filtering bound logger),
so a debug call on the hot path costs one method call when debug is off.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

__all__ = ["LEVELS", "configure_logging", "node_logger"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def configure_logging(
    level: str = "info", fmt: str = "console", stream: TextIO | None = None
) -> None:
    """Set up structlog for this process: ``fmt`` is "console" (for people) or "json" (one
    object per line, for machines); ``level`` one of :data:`LEVELS`. Writes to ``stream``
    (stderr by default)."""
    if level not in LEVELS:
        from dengine.errors import ConfigError

        raise ConfigError("observability.log_level", level, "one of " + ", ".join(LEVELS))
    if fmt not in ("console", "json"):
        from dengine.errors import ConfigError

        raise ConfigError("observability.log_format", fmt, "console or json")
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if fmt == "json":
        processors += [
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def node_logger(node_id: int, component: str | None = None, **bind: Any) -> Any:
    """A logger bound with ``node_id`` (and ``component``), to hand to a node's parts."""
    log = structlog.get_logger("dengine").bind(node_id=node_id)
    if component:
        log = log.bind(component=component)
    return log.bind(**bind) if bind else log
