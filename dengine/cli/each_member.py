"""Commands that act on every member in turn (``alarm``, ``storage``): find the members from
whichever endpoints answer, print one line per member, name the ones it failed on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dengine.cli.errors import OK, UNAVAILABLE, CliError
from dengine.errors import DengineError

__all__ = ["members", "print_each", "act_on_each"]


def members(c: Any) -> dict[str, Any]:
    """Every member's status (or the error asking for it), by address: the endpoints' answers
    and the members they list; CliError when no endpoint answers."""
    answers = dict(c.statuses(timeout=1.0))
    for st in [a for a in answers.values() if not isinstance(a, BaseException)]:
        for m in st.members:
            if m.address and m.address not in answers:
                try:
                    answers[m.address] = c.status(m.address, timeout=1.0)
                except DengineError as e:
                    answers[m.address] = e
    if all(isinstance(a, BaseException) for a in answers.values()):
        raise CliError(f"cannot reach the cluster at {','.join(answers)}: no endpoint answered",
                       UNAVAILABLE)
    return answers


def print_each(c: Any, describe: Callable[[Any], str]) -> int:
    """One line per member: ``describe(status)``, or why it could not be asked."""
    for addr, st in members(c).items():
        print(f"{addr}: unreachable ({st})" if isinstance(st, BaseException) else describe(st))
    return OK


def act_on_each(c: Any, act: Callable[[str, Any], str], *, not_done: str,
                refused: type[BaseException], refusal: str) -> int:
    """``act(address, status)`` on each member in turn, printing the line it returns; a member
    unreachable or refusing (``refused``: "node N at A: <refusal>: <error>") is named in the
    CliError raised at the end (``not_done``: "not compacted", ...)."""
    failed: list[str] = []
    for addr, st in members(c).items():
        if isinstance(st, BaseException):
            print(f"{addr}: unreachable, {not_done} ({st})")
            failed.append(addr)
            continue
        try:
            line = act(addr, st)
        except refused as e:
            print(f"node {st.id} at {addr}: {refusal}: {e}")
            failed.append(addr)
            continue
        print(f"node {st.id} at {addr}: {line}")
    if failed:
        raise CliError(f"{not_done} on {', '.join(failed)}", UNAVAILABLE)
    return OK
