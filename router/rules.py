"""The user's rules: may this contact method be told about this event? Pure functions.

Each rule looks at one (event, user, contact method) at one instant and returns
the reason code for skipping it, or ``None``. ``RULES`` is the order in which
they are asked; the first reason found is the one reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from router.directory import ContactMethod, User
from schemas import AlertEvent, Reason


@dataclass(frozen=True)
class Candidate:
    """One contact method considered for one event."""

    event: AlertEvent
    user: User
    method: ContactMethod
    now: datetime


Rule = Callable[[Candidate], Reason | None]


def disabled(c: Candidate) -> Reason | None:
    """A disabled method gets nothing."""
    return "disabled" if c.method.disabled else None


RULES: Sequence[Rule] = (disabled,)


def skip_reason(candidate: Candidate, rules: Sequence[Rule] = RULES) -> Reason | None:
    """The first rule's reason to skip ``candidate``, or ``None`` when it should get a job."""
    for rule in rules:
        reason = rule(candidate)
        if reason is not None:
            return reason
    return None
