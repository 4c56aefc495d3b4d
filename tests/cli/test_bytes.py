"""Any bytes in keys and values, through the real command: text, --hex, --base64, stdin, a file,
arguments that are not UTF-8, output that is not text; and a value over the size limit."""

from __future__ import annotations

import os
import sys

import pytest

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(sys.platform == "win32", reason="argv bytes are POSIX")]

BINARY = bytes(range(256))


def _ok(out):
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
    assert b"Traceback" not in out.stderr
    return out.stdout


def test_text_hex_and_base64_are_the_same_bytes(one_node):
    _ok(one_node("put", "greeting", "héllo"))
    assert _ok(one_node("get", "greeting")) == "héllo\n".encode()
    assert _ok(one_node("get", "--hex", "6772656574696e67")) == b"68c3a96c6c6f\n"
    assert _ok(one_node("get", "--base64", "Z3JlZXRpbmc=")) == b"aMOpbGxv\n"
    _ok(one_node("put", "--hex", "00ff", "0001fe"))
    assert _ok(one_node("get", "--hex", "00ff")) == b"0001fe\n"
    assert _ok(one_node("scan", "--hex", "--start", "00", "--end", "01")) == b"00ff = 0001fe\n"
    out = one_node("put", "--hex", "zz", "00")
    assert out.returncode == 2 and b"not hex" in out.stderr and b"Traceback" not in out.stderr


def test_arguments_that_are_not_utf8_are_taken_byte_for_byte(one_node):
    key, value = os.fsdecode(b"k\xff\xfe"), os.fsdecode(b"v\x80")
    _ok(one_node("put", key, value))
    assert _ok(one_node("get", "--hex", b"k\xff\xfe".hex())) == b"7680\n"
    out = one_node("get", key)
    # Not UTF-8: escaped on stdout, a note on stderr that says how to see it exactly.
    assert _ok(out) == b"v\\x80\n" and b"--hex" in out.stderr
    assert _ok(one_node("delete", key)) == b"deleted\n"


def test_values_from_stdin_and_a_file_any_size(one_node, tmp_path):
    _ok(one_node("put", "bin", "-", input=BINARY))
    assert bytes.fromhex(_ok(one_node("get", "--hex", b"bin".hex())).decode().strip()) == BINARY
    big = os.urandom(300 * 1024)  # above what a single argument can carry on Linux (128 KiB)
    path = tmp_path / "big.bin"
    path.write_bytes(big)
    _ok(one_node("put", "big", "--file", str(path)))
    import base64

    assert base64.b64decode(_ok(one_node("get", "--base64", "Ymln")).strip()) == big
    out = one_node("scan", "bi")
    assert b"bin = \\x00\\x01" in _ok(out) and b"--base64" in out.stderr
    out = one_node("put", "x", "v", "--file", str(path))
    assert out.returncode == 2 and b"not both" in out.stderr


def test_a_value_over_the_limit_names_the_setting_to_raise(one_node, tmp_path):
    path = tmp_path / "huge.bin"
    path.write_bytes(b"x" * (1024 * 1024 + 1))
    out = one_node("put", "huge", "--file", str(path))
    assert out.returncode == 6, out
    line = out.stderr.decode().strip()
    assert "raft.max_msg_bytes" in line and "Traceback" not in line, line
