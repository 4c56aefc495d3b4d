"""The users file and the error types of authorization."""

from __future__ import annotations

import pytest

from dengine import errors as E
from dengine.errors import ConfigError
from dengine.security.auth import Authorizer, hash_token, parse_users
from dengine.transport import status


class Ctx:
    def __init__(self, token: str | None = None) -> None:
        self.md = (("authorization", f"Bearer {token}"),) if token else ()

    def invocation_metadata(self):
        return self.md

    def auth_context(self):
        return {}


def test_users_file_roles_and_hashed_tokens(tmp_path):
    path = tmp_path / "users.toml"
    path.write_text(f'[users.alice]\nrole = "readwrite"\ntoken_sha256 = "{hash_token("t1")}"\n'
                    '[users.bob]\nrole = "read"\n')
    auth = Authorizer(str(path))
    assert auth.identify(Ctx("t1")).name == "alice"
    assert auth.identify(Ctx("t2")) is None
    assert auth.identify(Ctx()) is None
    assert "t1" not in path.read_text(), "tokens are kept hashed"
    with pytest.raises(E.Unauthenticated):
        auth.require(Ctx(), "read", "Get")
    with pytest.raises(E.PermissionDenied, match="needs role admin"):
        auth.require(Ctx("t1"), "admin", "RemoveMember")
    assert auth.require(Ctx("t1"), "readwrite", "Put").name == "alice"
    # A rotated users file: the old token no longer names anyone, the new one does.
    path.write_text(f'[users.alice]\nrole = "admin"\ntoken_sha256 = "{hash_token("t3")}"\n')
    auth.files.check_s = 0
    assert auth.identify(Ctx("t1")) is None
    assert auth.require(Ctx("t3"), "admin", "RemoveMember").role == "admin"


@pytest.mark.parametrize("text, key", [
    ('[users.a]\nrole = "root"\n', "users.a.role"),
    ('[users.a]\nrole = "read"\ntoken_sha256 = "abc"\n', "users.a.token_sha256"),
    ("[users\n", "auth.users_path"),
    # Two users with one token: which one is calling would be ambiguous.
    (f'[users.a]\nrole = "read"\ntoken_sha256 = "{hash_token("t")}"\n[users.b]\nrole = '
     f'"admin"\ntoken_sha256 = "{hash_token("t").upper()}"\n', "users.b.token_sha256"),
])
def test_a_bad_users_file_names_the_entry(text, key):
    with pytest.raises(ConfigError) as info:
        parse_users(text.encode())
    assert info.value.key == key


def test_the_new_errors_travel_as_grpc_statuses_and_back():
    import grpc

    for err, code in ((E.Unauthenticated("Get needs an identity"), grpc.StatusCode.UNAUTHENTICATED),
                      (E.PermissionDenied("bob", "read", "readwrite", "Put"),
                       grpc.StatusCode.PERMISSION_DENIED)):
        assert status.grpc_code(err) == code
        back = status.from_proto(status.to_proto(err))
        assert type(back) is type(err) and str(back) == str(err)
    back = status.from_proto(status.to_proto(E.ClusterMismatch(None, "evil", "cluster id")))
    assert back.got == "evil" and back.expected is None and "evil" in str(back)


def test_certs_token_prints_a_token_and_an_entry_that_admits_only_it(tmp_path, capsys):
    from dengine.cli import main

    assert main(["certs", "token", "ci", "--role", "readwrite"]) == 0
    out = capsys.readouterr().out
    token = out.split("token: ")[1].split()[0]
    entry = out.split("\n", 1)[1]
    assert token not in entry
    path = tmp_path / "users.toml"
    path.write_text(entry)
    auth = Authorizer(str(path))
    assert auth.require(Ctx(token), "readwrite", "Put").name == "ci"
    with pytest.raises(E.Unauthenticated):
        auth.require(Ctx(token + "x"), "read", "Get")
