"""Printable text for keys and values; reference.

Bytes that are UTF-8 are shown as text; every other byte as ``\\xNN``. Characters that would
garble a terminal are escaped too: newline as ``\\n`` (kept when ``lines``, as ``get`` prints
a value), carriage return as ``\\r``, every other C0 control but tab, DEL and the C1 controls
(U+0080..U+009F) as ``\\xNN`` of their code point. ``show`` also says whether it escaped
anything, so the CLI can tell the user how to see the bytes exactly.
"""

from __future__ import annotations

import re

__all__ = ["show"]

# Undecodable bytes decode (``surrogateescape``) to U+DC80..U+DCFF: one pattern finds them and
# every control character at once.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\udc80-\udcff]")
_UNSAFE_IN_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\udc80-\udcff]")


def _escape_for(o: int) -> str:
    if 0xDC80 <= o <= 0xDCFF:  # the byte o - 0xDC00, which was not UTF-8
        return f"\\x{o - 0xDC00:02x}"
    return {0x0A: "\\n", 0x0D: "\\r"}.get(o, f"\\x{o:02x}")


_ESCAPES = {chr(o): _escape_for(o) for o in [*range(0xA0), *range(0xDC80, 0xDD00)]
            if _UNSAFE.match(chr(o))}
_ESCAPES_IN_LINES = {c: e for c, e in _ESCAPES.items() if c != "\n"}


def show(data: bytes, lines: bool = False) -> tuple[str, bool]:
    """``(text, escaped)``: ``data`` as printable text and whether anything was escaped."""
    text = data.decode("utf-8", "surrogateescape")
    if (_UNSAFE_IN_LINES if lines else _UNSAFE).search(text) is None:
        return text, False
    table = _ESCAPES_IN_LINES if lines else _ESCAPES
    return "".join(map(table.get, text, text)), True
