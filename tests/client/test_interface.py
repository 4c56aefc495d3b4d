"""One interface for the three clients: same method names, same arguments (names, kinds,
defaults); the async ones awaitable, the blocking one not; ``py.typed`` shipped."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from dengine.client import Client, SyncClient
from dengine.client.api import AsyncKv, cas_request
from dengine.node.embedded import EmbeddedClient

METHODS = sorted(n for n in dir(AsyncKv) if not n.startswith("_") and
                 callable(getattr(AsyncKv, n)))


def _params(fn) -> list[tuple]:
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default) for p in list(sig.parameters.values())[1:]]


def test_the_interface_lists_every_call():
    assert {"put", "get", "get_value", "get_many", "delete", "compare_and_set", "cas",
            "write_batch", "batch", "scan", "scan_iter", "status", "transfer_leader",
            "add_learner", "promote", "remove_member", "close"} == set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_every_client_has_the_same_arguments(name):
    want = _params(getattr(AsyncKv, name))
    for cls in (Client, EmbeddedClient, SyncClient):
        assert _params(getattr(cls, name)) == want, (cls.__name__, name)


@pytest.mark.parametrize("name", METHODS)
def test_async_clients_await_and_the_sync_one_does_not(name):
    for cls in (Client, EmbeddedClient):
        fn = getattr(cls, name)
        if name == "scan_iter":
            assert inspect.isasyncgenfunction(fn), cls
        else:
            assert inspect.iscoroutinefunction(fn), (cls, name)
    fn = getattr(SyncClient, name)
    assert not inspect.iscoroutinefunction(fn) and not inspect.isasyncgenfunction(fn)
    # written out, with its own docstring (what IDEs and type checkers read)
    assert fn.__doc__ and inspect.signature(fn).return_annotation is not inspect.Signature.empty


def test_sync_client_methods_are_visible_without_an_instance():
    assert "put" in SyncClient.__dict__ and "compare_and_set" in SyncClient.__dict__


def test_py_typed_is_shipped():
    import dengine

    assert (Path(dengine.__file__).parent / "py.typed").is_file()


def test_compare_and_set_needs_an_explicit_condition():
    with pytest.raises(TypeError, match="needs a condition"):
        cas_request(b"k", None, None, False, b"v", None)
    with pytest.raises(TypeError, match="contradict"):
        cas_request(b"k", b"x", None, True, b"v", None)
    with pytest.raises(TypeError, match="contradict"):
        cas_request(b"k", None, 3, True, b"v", None)
    req = cas_request(b"k", None, None, True, b"v", None)
    assert req.HasField("expected_version") and req.expected_version == 0
    assert not req.HasField("expected_value")
