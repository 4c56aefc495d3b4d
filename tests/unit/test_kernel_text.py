"""The compiled text kernel agrees with its reference, and both with what decoding with
``backslashreplace`` and escaping control characters gives (the CLI's output rules)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dengine._core import load

REF = load("text", compiled=False)
FAST = load("text", compiled=True)

# Pieces that meet every rule: valid 2-, 3- and 4-byte sequences, overlong forms, encoded
# surrogates, code points past U+10FFFF, truncated sequences, C0 and C1 controls, tab, DEL.
PIECES = [b"a", b"\\", b"\t", b"\n", b"\r", b"\x00", b"\x1b", b"\x7f", b"\xc2\x85", b"\xc2\xa0",
          b"\xc3\xa9", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xe0\xa0\x80", b"\xed\x9f\xbf",
          b"\xed\xa0\x80", b"\xe2\x82\xac", b"\xe2\x82", b"\xf0\x8f\xbf\xbf", b"\xf0\x90\x80\x80",
          b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\x80", b"\xbf"]


def _spec(data: bytes, lines: bool) -> str:
    """The rules, written plainly: decode, then escape character by character."""
    out = []
    for c in data.decode("utf-8", "backslashreplace"):
        o = ord(c)
        if c == "\n" and lines:
            out.append(c)
        elif c in "\n\r":
            out.append("\\n" if c == "\n" else "\\r")
        elif (o < 0x20 and c != "\t") or 0x7F <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        else:
            out.append(c)
    return "".join(out)


@pytest.mark.parametrize("lines", [False, True])
@settings(max_examples=400, deadline=None)
@given(data=st.one_of(st.binary(max_size=40),
                      st.lists(st.sampled_from(PIECES), max_size=12).map(b"".join)))
def test_compiled_matches_reference_and_the_rules(data, lines):
    fast, ref = FAST.show(data, lines), REF.show(data, lines)
    assert fast == ref
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    want = _spec(data, lines)
    assert fast[0] == want
    # escaped exactly when the text is not the bytes as they are
    assert fast[1] == (not valid or fast[0] != data.decode("utf-8"))


def test_examples():
    assert FAST.show(b"caf\xc3\xa9\tok") == ("café\tok", False)
    assert FAST.show(b"a\nb") == ("a\\nb", True)
    assert FAST.show(b"a\nb", True) == ("a\nb", False)
    assert FAST.show(b"\xff\xc2\x85\xed\xa0\x80") == ("\\xff\\x85\\xed\\xa0\\x80", True)
    assert FAST.show(b"") == ("", False)
    with pytest.raises(TypeError):
        FAST.show("text")  # type: ignore[arg-type]
