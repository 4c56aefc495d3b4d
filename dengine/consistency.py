"""Read consistency levels: one type for the client, the embedded client and the node.

The numbers are client.proto's ``ReadConsistency`` (a test checks they agree); this module
imports nothing, so every layer may use it.
"""

from __future__ import annotations

import enum

__all__ = ["Consistency"]


class Consistency(enum.IntEnum):
    """Read consistency: LINEARIZABLE (ReadIndex, the default), LEASE (leader lease, no round
    trip), SERIALIZABLE (whatever the node has applied; may be stale, any node may answer)."""

    LINEARIZABLE = 0
    LEASE = 1
    SERIALIZABLE = 2

    @classmethod
    def parse(cls, value: Consistency | str | int) -> Consistency:
        """Accept the enum, its name in any case (``"lease"``) or its number."""
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                allowed = ", ".join(m.name.lower() for m in cls)
                raise ValueError(f"consistency {value!r} is not one of {allowed}") from None
        return cls(value)
