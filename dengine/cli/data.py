"""Keys and values on the command line and in the output: any bytes, never a traceback.

Keys and values are bytes. On the command line they are UTF-8 text by default; any argument the
terminal hands over that is not valid UTF-8 is taken byte for byte (the way the OS passed it), so
no argument can fail to encode. ``--hex`` and ``--base64`` read every key and value given on the
command line in that encoding and print every key and value in it. A value can also come from
standard input (``put KEY -``) or a file (``put KEY --file F``), taken as is, so its size is not
bounded by the OS's limit on arguments.

Output in the default text mode prints UTF-8 text as it is; bytes that are not UTF-8 (or control
characters that would garble a terminal) are escaped as ``\\xNN`` and a note on stderr says how
to see them exactly (``--hex``, ``--base64``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import sys
from typing import BinaryIO

from dengine._core import text as _text
from dengine.cli.errors import USAGE, CliError

__all__ = ["add_encoding_flags", "Codec", "read_value"]

TEXT, HEX, BASE64 = "text", "hex", "base64"


def add_encoding_flags(p: argparse.ArgumentParser) -> None:
    """``--hex`` / ``--base64`` (mutually exclusive) for keys and values in and out."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--hex", dest="encoding", action="store_const", const=HEX, default=TEXT,
                   help="keys and values on the command line and in the output are hex")
    g.add_argument("--base64", dest="encoding", action="store_const", const=BASE64,
                   help="keys and values on the command line and in the output are base64")


class Codec:
    """Turns command-line text into bytes and bytes into printable text, per ``--hex`` etc."""

    def __init__(self, encoding: str = TEXT) -> None:
        self.encoding = encoding
        self.escaped = False  # set when text output had to escape something

    def arg(self, text: str, what: str = "key") -> bytes:
        """The bytes of an argument."""
        if self.encoding == HEX:
            try:
                return bytes.fromhex(text)
            except ValueError:
                raise CliError(f"--hex: the {what} {text!r} is not hex (e.g. 6b6579)",
                               USAGE) from None
        if self.encoding == BASE64:
            try:
                return base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise CliError(f"--base64: the {what} {text!r} is not base64 (e.g. a2V5)",
                               USAGE) from None
        # What the OS gave, byte for byte (argv bytes that are not UTF-8 arrive as surrogates).
        return os.fsencode(text)

    def show(self, data: bytes, lines: bool = False) -> str:
        """Printable text for ``data`` (``lines``: newlines may stay, as ``get`` prints)."""
        if self.encoding == HEX:
            return data.hex()
        if self.encoding == BASE64:
            return base64.b64encode(data).decode("ascii")
        text, escaped = _text.show(data, lines)  # one C pass
        self.escaped |= escaped
        return text

    def note(self) -> None:
        """Tell stderr that some output was escaped and how to see it exactly."""
        if self.escaped:
            print("dengine: note: bytes that are not printable UTF-8 are shown as \\xNN escapes; "
                  "use --hex or --base64 to see them exactly", file=sys.stderr, flush=True)


def read_value(value: str | None, file: str | None, codec: Codec,
               stdin: BinaryIO | None = None) -> bytes:
    """The value of ``put``: the argument, ``-`` for stdin, or ``--file``'s bytes."""
    if file is not None and value is not None:
        raise CliError("give the value or --file, not both", USAGE)
    if file is not None:
        try:
            with open(file, "rb") as fh:
                return fh.read()
        except OSError as e:
            raise CliError(f"--file {file}: {e.strerror}", USAGE) from e
    if value is None:
        raise CliError("no value: give VALUE, - to read it from stdin, or --file PATH", USAGE)
    if value == "-":
        return (stdin or sys.stdin.buffer).read()
    return codec.arg(value, "value")
