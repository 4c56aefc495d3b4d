"""Client authorization at the service edge: who is calling, and may it do this.

Theory of operation
-------------------
With ``auth.enabled``, every client request is checked before it reaches the request
handler. The identity comes from, in order:

1. a bearer token (``authorization: Bearer <token>`` metadata, what ``Client(token=...)``
   sends): its SHA-256 must equal the ``token_sha256`` of a user in the users file;
2. the common name of the caller's client certificate (verified by the TLS handshake, see
   :mod:`dengine.security.tls`), looked up as a user name.

The users file (``auth.users_path``, TOML, re-read when it changes) holds tokens only hashed::

    [users.alice]
    role = "readwrite"
    token_sha256 = "9f86d0..."     # sha256 of the token, hex; optional

    [users.client]                 # a certificate with CN=client
    role = "admin"

Roles are ordered, each allowing what the ones before it do: ``read`` (Get, GetMany, Scan,
the full Status), ``readwrite`` (Put, Delete, CompareAndSet, WriteBatch), ``admin``
(TransferLeader, AddLearner, Promote, RemoveMember: membership and leadership changes;
AlarmDisarm, which lets writes through again; CompactStorage: maintenance). A request with
no identity gets UNAUTHENTICATED; one whose role is too low PERMISSION_DENIED naming the role
it needs. ``Status`` stays open (health probes use it), but without ``read`` it shows no
cluster id and no member or leader addresses. On the ``Batch`` stream each
request is checked alone: a forbidden one is answered with its own PERMISSION_DENIED error
and the others go on.

The check wraps the servicers' methods (:func:`protect_services`) before they are registered,
so the request handler itself knows nothing of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dengine.errors import ConfigError, PermissionDenied, Unauthenticated

__all__ = ["ROLES", "METHOD_ROLES", "STREAM_ROLES", "User", "Authorizer", "protect_services",
           "protect_servicer", "guard_stream", "hash_token", "parse_users"]

#: Roles, weakest first; each allows everything the ones before it allow.
ROLES = ("read", "readwrite", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}

#: The role each RPC needs (Status: none, it is filtered; Batch: per request).
METHOD_ROLES: Mapping[str, str] = {
    "Get": "read", "GetMany": "read", "Scan": "read",
    "Put": "readwrite", "Delete": "readwrite", "CompareAndSet": "readwrite",
    "WriteBatch": "readwrite", "RegisterSession": "readwrite",
    "TransferLeader": "admin", "AddLearner": "admin", "Promote": "admin",
    "RemoveMember": "admin", "CompactStorage": "admin",
    # Clearing the NOSPACE alarm lets writes through again: an operator's act (etcd: root).
    "AlarmDisarm": "admin",
    # Lease: a grant or revoke is a write (a revoke deletes the lease's keys).
    "Grant": "readwrite", "Revoke": "readwrite", "TimeToLive": "read",
}
#: The role each streaming RPC needs, checked once when the stream opens.
STREAM_ROLES: Mapping[str, str] = {"Watch": "read", "KeepAlive": "readwrite"}
#: The role each kind of request on the Batch stream needs.
BATCH_ROLES: Mapping[str, str] = {
    "get": "read", "get_many": "read", "scan": "read",
    "put": "readwrite", "delete": "readwrite", "cas": "readwrite", "batch": "readwrite",
}
_BATCH_NAMES = {"get": "Get", "get_many": "GetMany", "scan": "Scan", "put": "Put",
                "delete": "Delete", "cas": "CompareAndSet", "batch": "WriteBatch"}


def hash_token(token: str) -> str:
    """What the users file keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    token_sha256: str = ""


def parse_users(raw: bytes, origin: str = "users file") -> dict[str, User]:
    """The users of a users file; ConfigError naming the entry when one is malformed."""
    try:
        doc = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("auth.users_path", origin, f"valid TOML ({e})") from e
    users: dict[str, User] = {}
    for name, entry in dict(doc.get("users", {})).items():
        role = entry.get("role") if isinstance(entry, Mapping) else None
        if role not in _RANK:
            raise ConfigError(f"users.{name}.role", role, "one of " + ", ".join(ROLES))
        token = str(entry.get("token_sha256", "")).lower()
        if token and (len(token) != 64 or any(c not in "0123456789abcdef" for c in token)):
            raise ConfigError(f"users.{name}.token_sha256", token, "64 hex digits (sha256)")
        if token and any(u.token_sha256 == token for u in users.values()):
            raise ConfigError(f"users.{name}.token_sha256", token,
                              "a token of its own (another user has this one)")
        users[name] = User(name, role, token)
    return users


class Authorizer:
    """Identifies callers and checks their role against the users file."""

    def __init__(self, users_path: str, log: Any = None, *, check_s: float = 2.0) -> None:
        from dengine.security.tls import WatchedFiles

        self.logger = log
        self.files = WatchedFiles([users_path], lambda raw: _index(parse_users(raw[0],
                                                                              users_path)),
                                  check_s=check_s, log=log)

    @property
    def users(self) -> dict[str, User]:
        self.files.poll()
        return self.files.value[0]

    def identify(self, context: Any) -> User | None:
        """The user making the call of ``context``, or None."""
        self.files.poll()
        users, by_token = self.files.value
        for key, value in _metadata(context):
            if key == "authorization" and isinstance(value, str) \
                    and value[:7].lower() == "bearer ":
                # By the token's SHA-256: the caller chooses the token, not the digest, so the
                # lookup's timing tells it nothing. A wrong token is no identity, whatever the
                # certificate says.
                return by_token.get(hash_token(value[7:].strip()))
        from dengine.security.tls import peer_identity

        name = peer_identity(context)
        return users.get(name) if name is not None else None

    def require(self, context: Any, needed: str, what: str) -> User:
        """The caller, when its role allows ``what``; raises Unauthenticated / PermissionDenied."""
        user = self.identify(context)
        if user is None:
            raise Unauthenticated(f"{what} needs an identity")
        if _RANK[user.role] < _RANK[needed]:
            raise PermissionDenied(user.name, user.role, needed, what)
        return user


def _index(users: dict[str, User]) -> tuple[dict[str, User], dict[str, User]]:
    """The users by name, and those with a token by its digest (one lookup per call)."""
    return users, {u.token_sha256: u for u in users.values() if u.token_sha256}


def _metadata(context: Any) -> Any:
    try:
        return context.invocation_metadata() or ()
    except Exception:  # noqa: BLE001 - a context without metadata
        return ()


def protect_services(kv: Any, cluster: Any, authorizer: Authorizer, log: Any = None) -> None:
    """Wrap the ``Kv`` and ``Cluster`` servicers' RPC methods with the role checks (call
    before the servicers are registered on a server)."""
    for servicer in (kv, cluster):
        for name, role in METHOD_ROLES.items():
            method = getattr(servicer, name, None)
            if method is not None:
                setattr(servicer, name, _guard_unary(method, name, role, authorizer, log))
    if getattr(cluster, "Status", None) is not None:
        cluster.Status = _guard_status(cluster.Status, authorizer)
    if getattr(kv, "Batch", None) is not None:
        kv.Batch = _guard_batch(kv.Batch, authorizer, log)


def protect_servicer(servicer: Any, authorizer: Authorizer, log: Any = None) -> None:
    """Wrap any other servicer's RPC methods (``Lease``) with the role checks of
    :data:`METHOD_ROLES` and :data:`STREAM_ROLES` (before it is registered on a server)."""
    for name, role in METHOD_ROLES.items():
        method = getattr(servicer, name, None)
        if method is not None:
            setattr(servicer, name, _guard_unary(method, name, role, authorizer, log))
    for name, role in STREAM_ROLES.items():
        method = getattr(servicer, name, None)
        if method is not None:
            setattr(servicer, name, guard_stream(method, name, role, authorizer, log))


def guard_stream(method: Callable, name: str, role: str, auth: Authorizer,
                 log: Any = None) -> Callable:
    """A streaming RPC handler that checks the caller's role once, before the first answer."""
    async def guarded(request: Any, context: Any) -> Any:
        try:
            auth.require(context, role, name)
        except (Unauthenticated, PermissionDenied) as e:
            await _refuse(context, e, log)
            return
        async for answer in method(request, context):
            yield answer

    guarded.__name__ = name
    return guarded


async def _refuse(context: Any, err: Exception, log: Any) -> None:
    from dengine.transport.status import abort

    if log is not None:
        log.info("client request refused", reason=str(err), peer=_peer(context))
    await abort(context, err)


def _peer(context: Any) -> str:
    try:
        return str(context.peer())
    except Exception:  # noqa: BLE001 - only for a log line
        return "?"


def _guard_unary(method: Callable, name: str, role: str, auth: Authorizer, log: Any) -> Callable:
    async def guarded(request: Any, context: Any) -> Any:
        try:
            auth.require(context, role, name)
        except (Unauthenticated, PermissionDenied) as e:
            await _refuse(context, e, log)
        return await method(request, context)

    guarded.__name__ = name
    return guarded


def _guard_status(method: Callable, auth: Authorizer) -> Callable:
    async def status(request: Any, context: Any) -> Any:
        resp = await method(request, context)
        user = auth.identify(context)
        if user is None:  # read is the weakest role: any known user has it
            resp.cluster_id = ""
            resp.leader_addr = ""
            for m in resp.members:
                m.address = ""
        return resp

    status.__name__ = "Status"
    return status


def _guard_batch(method: Callable, auth: Authorizer, log: Any) -> Callable:
    from dengine.transport.status import to_proto
    from dengine.v1 import client_pb2 as pb

    async def batch(request_iterator: Any, context: Any) -> Any:
        user = auth.identify(context)
        if user is None:
            await _refuse(context, Unauthenticated("the Batch stream needs an identity"), log)
        assert user is not None
        refused: asyncio.Queue[Any] = asyncio.Queue()

        async def allowed() -> Any:
            async for b in request_iterator:
                keep = []
                for req in b.requests:
                    kind = req.WhichOneof("request")
                    needed = BATCH_ROLES.get(kind or "", "read")
                    if kind is not None and _RANK[user.role] < _RANK[needed]:
                        err = PermissionDenied(user.name, user.role, needed, _BATCH_NAMES[kind])
                        resp = pb.ClientResponse(request_id=req.request_id)
                        getattr(resp, kind).error.CopyFrom(to_proto(err))
                        refused.put_nowait(resp)
                    else:
                        keep.append(req)
                if keep:
                    yield pb.ClientRequestBatch(requests=keep)

        inner = method(allowed(), context).__aiter__()
        nxt: asyncio.Task[Any] | None = None
        try:
            while True:
                if nxt is None:
                    nxt = asyncio.ensure_future(inner.__anext__())
                wait = asyncio.ensure_future(refused.get())
                done, _ = await asyncio.wait({nxt, wait}, return_when=asyncio.FIRST_COMPLETED)
                if wait in done:
                    out = [wait.result()]
                    while not refused.empty():
                        out.append(refused.get_nowait())
                    yield pb.ClientResponseBatch(responses=out)
                else:
                    wait.cancel()
                if nxt in done:
                    try:
                        item = nxt.result()
                    except StopAsyncIteration:
                        break
                    nxt = None
                    yield item
            out = []
            while not refused.empty():
                out.append(refused.get_nowait())
            if out:
                yield pb.ClientResponseBatch(responses=out)
        finally:
            if nxt is not None and not nxt.done():
                nxt.cancel()

    return batch
