"""A page's state and its next move. Pure.

A page is one alert key being told to people; it is **open** until acknowledged or
resolved. An escalating page remembers the step and round it paged last and when the
next one is due. :func:`next_move` says what a worker does when that time comes: page
the next step (or the first step of the next round), or stop (``unacknowledged``).
:func:`answer` is what an acknowledgement or a resolve does: it closes the page once;
later answers change nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, Protocol

from router.pages.policy import Policy
from schemas import AckAction, AlertEvent, PageAck

PageStatus = Literal["open", "acknowledged", "resolved", "unacknowledged"]


@dataclass(frozen=True)
class Page:
    """One alert key being told to people, as the store keeps it."""

    alert_key: str
    event: AlertEvent
    policy: Policy | None
    reply_code: str | None
    step: int
    round: int
    opened_at: datetime
    next_step_at: datetime | None
    status: PageStatus = "open"
    answered_by: str | None = None
    answered_via: str | None = None
    answered_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.status == "open"

    def due(self, now: datetime) -> bool:
        """Whether its next step (or its end) is due at ``now``."""
        return self.open and self.next_step_at is not None and self.next_step_at <= now


@dataclass(frozen=True)
class PageStep:
    """Page ``step`` of ``round``; the one after it is due at ``next_at``."""

    step: int
    round: int
    next_at: datetime


@dataclass(frozen=True)
class Stop:
    """The last round's last delay passed: the page is unacknowledged, escalation ends."""

    last_step: int


Move = PageStep | Stop


def first_step(policy: Policy, now: datetime) -> PageStep:
    """What a new page does: its first step, at once."""
    return PageStep(1, 1, now + timedelta(seconds=policy.step(1).delay_seconds))


def next_move(page: Page, now: datetime) -> Move:
    """The move of a page whose next step is due at ``now``."""
    assert page.policy is not None, "only escalating pages fall due"
    policy = page.policy
    if page.step < len(policy.steps):
        step, round_ = page.step + 1, page.round
    elif page.round < policy.rounds:
        step, round_ = 1, page.round + 1
    else:
        return Stop(page.step)
    return PageStep(step, round_, now + timedelta(seconds=policy.step(step).delay_seconds))


def moved(page: Page, move: Move) -> Page:
    """``page`` after ``move``."""
    if isinstance(move, Stop):
        return replace(page, status="unacknowledged", next_step_at=None)
    return replace(page, step=move.step, round=move.round, next_step_at=move.next_at)


def answer(
    page: Page, action: AckAction, user_id: str | None, source: str, at: datetime
) -> Page | None:
    """The page after an acknowledgement or resolve, or None when it changes nothing
    (already answered: acknowledging twice, or after the page closed)."""
    if page.status in ("acknowledged", "resolved") and (
        action == "ack" or page.status == "resolved"
    ):
        return None
    status: PageStatus = "acknowledged" if action == "ack" else "resolved"
    return replace(
        page,
        status=status,
        next_step_at=None,
        answered_by=user_id,
        answered_via=source,
        answered_at=at,
    )


@dataclass(frozen=True)
class Answered:
    """An acknowledgement or resolve that changed a page: the page before and after."""

    ack: PageAck
    before: Page
    after: Page


class PageBook(Protocol):
    """What routing and the acknowledgement edge need of the pages' store."""

    async def open_pages(
        self, events: Sequence[AlertEvent], now: datetime
    ) -> dict[str, Page | None]:
        """Per event: its page (opened now, or as it is), None for an unknown policy."""
        ...

    async def policies(self, policy_ids: Collection[str] | None = None) -> list[Policy]:
        """Policies with their steps."""
        ...

    async def answer_pages(self, acks: Sequence[PageAck]) -> list[Answered]:
        """Apply acknowledgements and resolves; those that changed a page."""
        ...
