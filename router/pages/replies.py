"""SMS replies read. Pure.

An SMS job of an open page carries a ``reply_code`` and its text ends with
``Reply <code>A to ack, <code>R to resolve``. A reply ``<code>A`` or ``<code>R``
(any case, spaces allowed) answers that page; ``STOP`` (and the carriers' other
opt-out words) opts the number out; anything else is not understood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas import AckAction

#: The opt-out keywords carriers honour (CTIA); the SMS provider usually acts on them too.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
_ANSWER = re.compile(r"([0-9]{1,6})([AR])")


@dataclass(frozen=True)
class Answer:
    """A reply that answers the page with ``code``."""

    code: str
    action: AckAction


@dataclass(frozen=True)
class OptOut:
    """A reply asking for no more texts."""


@dataclass(frozen=True)
class NotUnderstood:
    """Anything else."""


Reply = Answer | OptOut | NotUnderstood


def read_reply(text: str) -> Reply:
    """What an inbound SMS says."""
    compact = re.sub(r"\s+", "", text).upper()
    if compact in STOP_WORDS:
        return OptOut()
    match = _ANSWER.fullmatch(compact)
    if match is None:
        return NotUnderstood()
    return Answer(str(int(match.group(1))), "ack" if match.group(2) == "A" else "resolve")


def reply_hint(code: str) -> str:
    """The line an SMS of an open page ends with."""
    return f"Reply {code}A to ack, {code}R to resolve"
