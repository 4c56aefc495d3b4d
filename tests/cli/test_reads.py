"""Reads served by any member, with the real commands: a serializable read from the one node
left of a cluster that lost its majority; a linearizable one it then cannot serve."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.timeout(120)


def test_a_minority_node_serves_serializable_reads(dengine, one_error_line):
    out = dengine("cluster", "up", "--detach", "--base-port", "7631")
    assert out.returncode == 0, out
    try:
        assert dengine("put", "k", "v").returncode == 0
        status = dengine("cluster", "status").stdout
        rows = {int(r[0]): r for r in (ln.split() for ln in status.splitlines())
                if r and r[0].isdigit()}
        survivor = next(i for i, r in rows.items() if r[4] == "follower")
        # wait until the survivor has applied the write, then take the majority away
        addr = rows[survivor][1]
        for _ in range(100):
            if dengine("get", "k", "--endpoints", addr, "--consistency",
                       "serializable").stdout == "v\n":
                break
        for i in rows:
            if i != survivor:
                assert dengine("cluster", "kill-node", str(i)).returncode == 0
        # every endpoint from ./data (two refuse): the read goes to the member that answers
        out = dengine("get", "k", "--consistency", "serializable", "--timeout", "5")
        assert (out.returncode, out.stdout) == (0, "v\n"), out
        out = dengine("get", "k", "--consistency", "serializable", "--endpoints", addr)
        assert (out.returncode, out.stdout) == (0, "v\n"), out
        # a linearizable read needs a leader: refused plainly
        line = one_error_line(dengine("get", "k", "--timeout", "2"), 5)
        assert re.search(r"no leader|cannot reach", line), line
    finally:
        dengine("cluster", "down")
