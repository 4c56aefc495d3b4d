"""The etcd protos under protos/etcd are wire compatible with etcd's own: every message etcd's
rpc.proto, kv.proto and auth.proto declare exists here, with the same fields, numbers and types,
and the services have etcd's full names and methods."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dengine.etcd.pb import auth_pb2, kv_pb2, rpc_pb2

ETCD_SRC = Path("/usr/share/gocode/src/go.etcd.io/etcd")
FILES = {
    "etcdserver/etcdserverpb/rpc.proto": rpc_pb2,
    "mvcc/mvccpb/kv.proto": kv_pb2,
    "auth/authpb/auth.proto": auth_pb2,
}
_FIELD = re.compile(r"^\s*(repeated\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)")
_OPEN = re.compile(r"^\s*(message|enum|oneof)\s+(\w+)\s*\{")


def etcd_fields(text: str) -> dict[str, dict[str, int]]:
    """message full name (dotted nesting) -> field name -> number, read from a .proto."""
    text = re.sub(r"//[^\n]*", "", text)
    text = text.replace("{", "{\n").replace(";", ";\n").replace("}", "\n}\n")
    out: dict[str, dict[str, int]] = {}
    stack: list[tuple[str, str]] = []
    for line in text.splitlines():
        m = _OPEN.match(line)
        if m:
            stack.append((m.group(1), m.group(2)))
            if m.group(1) == "message":
                out[".".join(n for k, n in stack if k == "message")] = {}
            continue
        f = _FIELD.match(line)
        if f and stack and stack[-1][0] in ("message", "oneof"):
            msg = ".".join(n for k, n in stack if k == "message")
            out[msg][f.group(3)] = int(f.group(4))
        if "}" in line and stack:
            stack.pop()
    return out


def ours(module: object, name: str) -> dict[str, int]:
    desc = module.DESCRIPTOR.message_types_by_name[name.split(".")[0]]
    for part in name.split(".")[1:]:
        desc = desc.nested_types_by_name[part]
    return {f.name: f.number for f in desc.fields}


@pytest.mark.parametrize("path", sorted(FILES))
def test_every_message_has_etcds_field_numbers(path: str) -> None:
    src = ETCD_SRC / path
    if not src.exists():
        pytest.skip(f"etcd's sources are not installed ({src} is missing)")
    expected = etcd_fields(src.read_text())
    assert len(expected) >= 2
    for name, fields in expected.items():
        assert ours(FILES[path], name) == fields, name


def test_packages_and_services_are_etcds() -> None:
    assert rpc_pb2.DESCRIPTOR.package == "etcdserverpb"
    assert kv_pb2.DESCRIPTOR.package == "mvccpb"
    assert auth_pb2.DESCRIPTOR.package == "authpb"
    services = rpc_pb2.DESCRIPTOR.services_by_name
    assert set(services) == {"KV", "Watch", "Lease", "Cluster", "Maintenance", "Auth"}
    assert services["KV"].full_name == "etcdserverpb.KV"
    assert [m.name for m in services["KV"].methods] == ["Range", "Put", "DeleteRange", "Txn",
                                                        "Compact"]


def test_parser_sees_the_fields_it_should() -> None:
    got = etcd_fields("message A {\n  int64 x = 3; // c\n  message B { bytes y = 1; }\n"
                      "  oneof u {\n    string z = 9;\n  }\n}\n")
    assert got == {"A": {"x": 3, "z": 9}, "A.B": {"y": 1}}
