"""The ``[etcd_api]`` config section: off by default, a host:port when on, never with auth."""

from __future__ import annotations

import pytest

from dengine.config import build_config
from dengine.errors import ConfigError


def test_off_by_default_and_a_listen_address_turns_it_on():
    assert build_config().etcd_api.listen == ""
    assert build_config({"etcd_api": {"listen": "127.0.0.1:2379"}}).etcd_api.listen == \
        "127.0.0.1:2379"


@pytest.mark.parametrize("bad", ["2379", "host:", "127.0.0.1:99999", ":12"])
def test_a_bad_listen_address_is_refused_naming_the_key(bad):
    with pytest.raises(ConfigError, match="etcd_api.listen"):
        build_config({"etcd_api": {"listen": bad}})


def test_refused_with_auth_enabled(tmp_path):
    users = tmp_path / "users.toml"
    users.write_text("")
    with pytest.raises(ConfigError, match="does not check dengine's roles"):
        build_config({"etcd_api": {"listen": "127.0.0.1:2379"},
                      "auth": {"enabled": True, "users_path": str(users)}})
