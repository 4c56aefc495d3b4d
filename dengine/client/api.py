"""The one client interface: :class:`Client` (async, over gRPC), :class:`EmbeddedClient` (async,
in-process) and :class:`SyncClient` (blocking) have the same methods with the same arguments.

:class:`AsyncKv` states it as a :class:`typing.Protocol`, so code written against it runs on
either async client, and a type checker tells when one drifts (a test compares the signatures
of all three). ``SyncClient`` has the same methods, each returning the value instead of an
awaitable.

Compare-and-set states its condition explicitly: ``expected_value=...``,
``expected_version=...`` or ``expected_absent=True`` (the key must not exist). A call with no
condition is refused: an unconditional write is ``put``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from dengine.client.types import (
    CasResult,
    Consistency,
    Delete,
    Key,
    KeyValue,
    Member,
    NodeStatus,
    Put,
    ScanPage,
    to_bytes,
)

__all__ = ["AsyncKv", "ConsistencyArg", "cas_request"]

#: A read consistency: the enum, its name (``"lease"``) or its number.
ConsistencyArg = Consistency | str | int


@runtime_checkable
class AsyncKv(Protocol):
    """What every async dengine client offers (see the module docstring)."""

    async def put(self, key: Key, value: Key, *, timeout: float | None = None,
                  endpoint: str | None = None, lease: int = 0) -> int: ...

    async def get(self, key: Key, *, consistency: ConsistencyArg = Consistency.LINEARIZABLE,
                  timeout: float | None = None, endpoint: str | None = None
                  ) -> KeyValue | None: ...

    async def get_value(self, key: Key, *,
                        consistency: ConsistencyArg = Consistency.LINEARIZABLE,
                        timeout: float | None = None, endpoint: str | None = None
                        ) -> bytes | None: ...

    async def get_many(self, keys: Iterable[Key], *,
                       consistency: ConsistencyArg = Consistency.LINEARIZABLE,
                       timeout: float | None = None, endpoint: str | None = None
                       ) -> dict[bytes, KeyValue]: ...

    async def delete(self, key: Key, *, timeout: float | None = None,
                     endpoint: str | None = None) -> bool: ...

    async def compare_and_set(self, key: Key, *, expected_value: Key | None = None,
                              expected_version: int | None = None,
                              expected_absent: bool = False, new_value: Key | None = None,
                              timeout: float | None = None) -> CasResult: ...

    async def cas(self, key: Key, *, expected_value: Key | None = None,
                  expected_version: int | None = None, expected_absent: bool = False,
                  new_value: Key | None = None, timeout: float | None = None) -> CasResult: ...

    async def write_batch(self, ops: Iterable[Put | Delete] = (), *,
                          puts: Mapping[Key, Key] | Iterable[tuple[Key, Key]] = (),
                          deletes: Iterable[Key] = (), timeout: float | None = None) -> int: ...

    async def batch(self, ops: Iterable[Put | Delete] = (), *,
                    puts: Mapping[Key, Key] | Iterable[tuple[Key, Key]] = (),
                    deletes: Iterable[Key] = (), timeout: float | None = None) -> int: ...

    async def scan(self, start: Key = b"", end: Key = b"", *, prefix: Key = b"",
                   limit: int = 0, consistency: ConsistencyArg = Consistency.LINEARIZABLE,
                   timeout: float | None = None, endpoint: str | None = None) -> ScanPage: ...

    def scan_iter(self, start: Key = b"", end: Key = b"", *, prefix: Key = b"",
                  page_size: int = 1000,
                  consistency: ConsistencyArg = Consistency.LINEARIZABLE,
                  timeout: float | None = None, endpoint: str | None = None
                  ) -> AsyncGenerator[KeyValue, None]: ...

    async def status(self, endpoint: str | None = None, *,
                     timeout: float | None = None) -> NodeStatus: ...

    async def transfer_leader(self, target_id: int, *, timeout: float | None = None
                              ) -> None: ...

    async def add_learner(self, node_id: int, address: str, *,
                          timeout: float | None = None) -> list[Member]: ...

    async def promote(self, node_id: int, *, timeout: float | None = None
                      ) -> list[Member]: ...

    async def remove_member(self, node_id: int, *, timeout: float | None = None
                            ) -> list[Member]: ...

    async def close(self) -> None: ...


def cas_request(key: Key, expected_value: Key | None, expected_version: int | None,
                expected_absent: bool, new_value: Key | None, session: Any) -> Any:
    """The ``CompareAndSetRequest`` for a call; refuses a call without a condition or with
    contradictory ones (TypeError: the caller's mistake, nothing was sent)."""
    from dengine.v1 import client_pb2

    if expected_absent:
        if expected_value is not None:
            raise TypeError("compare_and_set: expected_absent=True and an expected_value "
                            "contradict each other")
        if expected_version not in (None, 0):
            raise TypeError(f"compare_and_set: expected_absent=True and expected_version="
                            f"{expected_version} contradict each other")
        expected_version = 0  # version 0: the key does not exist
    elif expected_value is None and expected_version is None:
        raise TypeError("compare_and_set needs a condition: expected_value=..., "
                        "expected_version=... or expected_absent=True (an unconditional "
                        "write is put())")
    req = client_pb2.CompareAndSetRequest(key=to_bytes(key), session=session)
    if expected_value is not None:
        req.expected_value = to_bytes(expected_value, "expected_value")
    if expected_version is not None:
        req.expected_version = expected_version
    if new_value is not None:
        req.new_value = to_bytes(new_value, "new_value")
    return req
