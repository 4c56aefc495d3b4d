"""``dengine watch`` and ``dengine lease`` against ``dengine cluster up``, as a user runs them,
with the leader killed (kill -9) between two watches."""

from __future__ import annotations

import os
import re
import signal

import pytest

pytestmark = pytest.mark.timeout(120)


def test_watch_and_leases_from_the_command_line(tmp_path, dengine, cli_main, cluster_up,
                                                one_error_line, monkeypatch):
    home = tmp_path / "project"
    home.mkdir()
    up = cluster_up(home)
    monkeypatch.chdir(home)
    out = cli_main("put", "fruit/apple", "1")
    first = int(re.search(r"revision (\d+)", out.stdout)[1])
    cli_main("put", "veg/leek", "2")
    cli_main("put", "fruit/pear", "3")
    cli_main("delete", "fruit/apple")
    out = dengine("watch", "fruit/", "--prefix", "--rev", str(first), "--count", "3",
                  "--prev-kv", cwd=home)
    assert out.returncode == 0, out
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"PUT fruit/apple 1 (rev {first}, version 1)"), lines
    assert lines[1].startswith("PUT fruit/pear 3 "), lines
    assert lines[2].startswith("DELETE fruit/apple (rev ") and lines[2].endswith("was 1")

    out = cli_main("lease", "grant", "60")
    assert out.returncode == 0, out
    lease = re.search(r"lease (\d+) granted with TTL 60s", out.stdout)[1]
    assert cli_main("put", "svc/one", "up", "--lease", lease).returncode == 0
    out = cli_main("lease", "ttl", lease, "--keys")
    assert out.returncode == 0 and "of 60s" in out.stdout and "svc/one" in out.stdout, out
    out = cli_main("lease", "keepalive", lease, "--once")
    assert out.returncode == 0 and "TTL 60s" in out.stdout, out

    # kill -9 the leader; a watch from the start still sees every change, once
    status = cli_main("status").stdout
    leader = int(re.search(r"leader node (\d+)", status)[1])
    os.kill(up.pids()[leader], signal.SIGKILL)
    out = cli_main("lease", "revoke", lease)
    assert out.returncode == 0, out
    one_error_line(cli_main("get", "svc/one"), 4, "not found")
    one_error_line(cli_main("lease", "ttl", lease), 4, f"lease {lease} does not exist")
    out = dengine("watch", "svc/", "--prefix", "--rev", str(first), "--count", "2", cwd=home)
    assert out.returncode == 0, out
    lines = out.stdout.splitlines()
    assert lines[0].startswith("PUT svc/one up (rev ") and f"lease {lease}" in lines[0]
    assert lines[1].startswith("DELETE svc/one (rev "), lines
