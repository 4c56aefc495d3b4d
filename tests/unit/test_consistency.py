"""One Consistency type for the client, the embedded client and the node."""

from __future__ import annotations

import pytest

from dengine import client, node
from dengine.client import types
from dengine.consistency import Consistency
from dengine.v1 import client_pb2


def test_the_numbers_are_the_protos():
    for level in Consistency:
        assert client_pb2.ReadConsistency.Value(level.name) == level
    assert {v.number for v in client_pb2.ReadConsistency.DESCRIPTOR.values} == set(Consistency)


def test_every_layer_uses_the_same_type():
    assert client.Consistency is types.Consistency is node.Consistency is Consistency


@pytest.mark.parametrize("given", ["lease", "LEASE", 1, Consistency.LEASE])
def test_parse(given):
    assert Consistency.parse(given) is Consistency.LEASE


def test_parse_refuses_unknown_levels():
    with pytest.raises(ValueError, match="not one of linearizable, lease, serializable"):
        Consistency.parse("eventual")
    with pytest.raises(ValueError):
        Consistency.parse(7)
