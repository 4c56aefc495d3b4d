"""RefusalLog: every refusal counted (and exported), each reason logged at most once a period."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from dengine.security.refusals import RefusalLog, reason_kind


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []

    def warning(self, event: str, **kw) -> None:
        self.lines.append((event, kw))


def test_counted_always_logged_once_per_interval_with_the_address_and_suppressed_count():
    now = [0.0]
    rec = Recorder()
    rl = RefusalLog(rec, interval_s=10, clock=lambda: now[0])
    registry = CollectorRegistry()
    rl.bind_registry(registry)
    for _ in range(5):
        rl.refuse("stale term 3 < 4", "ipv4:10.0.0.9:5000", "stale term 3 < 4", peer=3)
    rl.refuse("undecodable", "ipv4:10.0.0.8:1", "bad")
    assert rl.counts == {"stale term N < N": 5, "undecodable": 1}
    assert [kw["peer_addr"] for _, kw in rec.lines] == ["ipv4:10.0.0.9:5000", "ipv4:10.0.0.8:1"]
    now[0] = 11
    rl.refuse("stale term 3 < 4", "ipv4:10.0.0.9:5000", "stale term 3 < 4")
    assert rec.lines[-1][1]["suppressed"] == 4
    text = generate_latest(registry).decode()
    assert 'dengine_peer_refusals_total{reason="stale term N < N"} 6.0' in text


def test_reason_kind_folds_numbers():
    assert reason_kind("term 4611686018427387904 above the sane bound") == \
        "term N above the sane bound"
