"""Logging setup: JSON and console rendering, level filtering, bound node_id."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from dengine.errors import ConfigError
from dengine.observability.logging import configure_logging, node_logger


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()


def test_json_lines_carry_node_id_and_level():
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    log = node_logger(3, "transport", term=7)
    log.info("became leader", role="leader")
    log.debug("not shown")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 1
    rec = lines[0]
    assert rec["event"] == "became leader" and rec["level"] == "info"
    assert (rec["node_id"], rec["component"], rec["term"], rec["role"]) == (
        3,
        "transport",
        7,
        "leader",
    )
    assert "timestamp" in rec


def test_console_and_debug_level():
    out = io.StringIO()
    configure_logging("debug", "console", stream=out)
    node_logger(1).debug("probe sent", peer=2)
    text = out.getvalue()
    assert "probe sent" in text and "node_id=1" in text and "peer=2" in text


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError) as info:
        configure_logging("verbose", "json")
    assert info.value.key == "observability.log_level"
    with pytest.raises(ConfigError) as info:
        configure_logging("info", "xml")
    assert info.value.key == "observability.log_format"
