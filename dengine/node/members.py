"""The node's own record of membership: peer addresses and the config at compaction points.

Theory of operation. The Raft core knows members by id only; the node must also know where
they listen. Addresses travel in the ``context`` of every membership-change entry (a small JSON
object ``{"id": "host:port"}``) and in the first chunk of every snapshot, so every node learns
them from the log itself. The node keeps what it learned in ``members.json`` in its data
directory, replaced atomically (temporary file, fsync, rename), so a restart reads membership
from its own storage and never from the config file.

The same file keeps ``confs``: the membership config at each point the log store was compacted
to (or reset to by a snapshot). On restart the core is given the config at the log store's
first index minus one and replays the membership changes of the log after it. The record for a
compaction is written *before* the store compacts, so whatever point the store reached, a
record at or before it exists. A fresh cluster's first entry (index 1) is itself the change that
adds the initial members, so the config before index 1 is the empty one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from dengine.errors import Corruption
from dengine.raft.types import ConfState

__all__ = ["MemberBook", "decode_addresses", "encode_addresses", "conf_to_json", "conf_from_json"]

FILE_NAME = "members.json"
#: Compaction records kept; older ones can no longer be the store's first index.
MAX_CONF_RECORDS = 16


def encode_addresses(addresses: Mapping[int, str]) -> bytes:
    """Canonical bytes for a conf change context: every node encodes the same map alike."""
    return json.dumps({str(k): v for k, v in sorted(addresses.items())},
                      separators=(",", ":")).encode()


def decode_addresses(data: bytes) -> dict[int, str]:
    """Inverse of :func:`encode_addresses`; bad bytes give an empty map (addresses are hints)."""
    if not data:
        return {}
    try:
        raw = json.loads(data)
        return {int(k): str(v) for k, v in raw.items() if int(k) > 0}
    except (ValueError, AttributeError, TypeError):
        return {}


def conf_to_json(cs: ConfState) -> dict:
    return {
        "voters": sorted(cs.voters),
        "learners": sorted(cs.learners),
        "voters_outgoing": sorted(cs.voters_outgoing),
        "learners_next": sorted(cs.learners_next),
        "auto_leave": cs.auto_leave,
    }


def conf_from_json(d: Mapping) -> ConfState:
    return ConfState(
        voters=frozenset(d.get("voters", ())),
        learners=frozenset(d.get("learners", ())),
        voters_outgoing=frozenset(d.get("voters_outgoing", ())),
        learners_next=frozenset(d.get("learners_next", ())),
        auto_leave=bool(d.get("auto_leave", False)),
    )


class MemberBook:
    """Addresses of every node ever seen plus the configs at compaction points.

    ``directory`` None keeps everything in memory (tests with the memory log store).
    """

    def __init__(self, directory: str | None) -> None:
        self.path = os.path.join(directory, FILE_NAME) if directory else None
        self.addresses: dict[int, str] = {}
        #: (index, ConfState) ascending: the config in force once the log ends at index.
        self.confs: list[tuple[int, ConfState]] = []
        if self.path and os.path.exists(self.path):
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            with open(self.path, "rb") as f:
                raw = json.load(f)
            self.addresses = {int(k): str(v) for k, v in raw["addresses"].items()}
            self.confs = [(int(i), conf_from_json(c)) for i, c in raw["confs"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise Corruption(self.path, None, f"unreadable membership record: {e}") from e

    def save(self) -> None:
        if self.path is None:
            return
        body = json.dumps({
            "addresses": {str(k): v for k, v in sorted(self.addresses.items())},
            "confs": [[i, conf_to_json(c)] for i, c in self.confs],
        }).encode()
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(os.path.dirname(self.path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def learn(self, addresses: Mapping[int, str]) -> bool:
        """Merge addresses; True (and saved) when something changed."""
        changed = False
        for node_id, addr in addresses.items():
            if addr and self.addresses.get(node_id) != addr:
                self.addresses[node_id] = addr
                changed = True
        if changed:
            self.save()
        return changed

    def record_conf(self, index: int, cs: ConfState) -> None:
        """The config in force at ``index`` (a compaction or snapshot point); saved at once."""
        self.confs = [(i, c) for i, c in self.confs if i < index]
        self.confs.append((index, cs))
        del self.confs[:-MAX_CONF_RECORDS]
        self.save()

    def conf_at(self, index: int) -> ConfState:
        """The recorded config at the latest point <= ``index`` (empty when none)."""
        found = ConfState()
        for i, c in self.confs:
            if i > index:
                break
            found = c
        return found
