"""The pages' Kafka edge: acknowledgements on ``pages.acks``, SMS replies on
``deliveries.replies``, and what routing asks of pages (the first step of an event
that names a policy; an ``up`` event resolving its page).

Every acknowledgement is recorded; only one that changes a page is counted in
``router_time_to_ack_seconds``. A reply is matched to a page by its code and to a
user by the number it came from: only a number of one of the users the page paged
may answer it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from router import metrics
from router.db.store import PgStore
from router.directory.addresses import mask
from router.pages.escalation import Answered, PageBook
from router.pages.policy import PolicyStep
from router.pages.replies import Answer, OptOut, read_reply
from router.routing.build import Paging
from schemas import AlertEvent, InboundSms, PageAck

log = structlog.get_logger("router.pages")


@dataclass(frozen=True)
class FirstStep:
    """What routing pages for an event that names a policy: its policy's first step,
    with the page's reply code (None for an ``up`` event, which opens no page)."""

    step: PolicyStep
    paging: Paging | None


async def first_steps(
    book: PageBook | None, events: Sequence[AlertEvent], now: datetime
) -> dict[str, FirstStep]:
    """Event id -> its first step, for the events naming a known policy with steps. A
    ``down`` (or any kind but ``up``) opens its page; an ``up`` pages step 1 untracked."""
    naming = [e for e in events if e.escalation_policy_id is not None]
    if book is None or not naming:
        return {}
    found: dict[str, FirstStep] = {}
    opening = [e for e in naming if e.kind != "up"]
    pages = await book.open_pages(opening, now) if opening else {}
    for event_id, page in pages.items():
        if page is not None and page.policy is not None:
            found[event_id] = FirstStep(page.policy.step(1), Paging(1, 1, page.reply_code))
    ups = [e for e in naming if e.kind == "up"]
    if ups:
        policies = {
            p.id: p for p in await book.policies({e.escalation_policy_id or "" for e in ups})
        }
        for event in ups:
            policy = policies.get(event.escalation_policy_id or "")
            if policy is not None and policy.steps:
                found[event.event_id] = FirstStep(policy.step(1), None)
    return found


async def resolve_by_events(
    book: PageBook | None, events: Sequence[AlertEvent], now: datetime
) -> list[Answered]:
    """An ``up`` event with a ``dedup_key`` resolves the open page of that alert key."""
    ups = [e for e in events if e.kind == "up" and e.dedup_key]
    if book is None or not ups:
        return []
    return await apply_acks(
        book,
        [PageAck(alert_key=e.alert_key(), action="resolve", source="event", at=now) for e in ups],
    )


async def apply_acks(book: PageBook, acks: Sequence[PageAck]) -> list[Answered]:
    """Apply ``acks`` in order; log and count each, and each page it answered."""
    answered = await book.answer_pages(acks)
    for ack in acks:
        metrics.ACKS.labels(ack.source).inc()
    for done in answered:
        page = done.after
        seconds = (done.ack.at - done.before.opened_at).total_seconds()
        if done.before.status in ("open", "unacknowledged"):
            metrics.TIME_TO_ACK.observe(max(seconds, 0.0))
        log.info(
            "page_acknowledged" if page.status == "acknowledged" else "page_resolved",
            alert_key=page.alert_key,
            user_id=done.ack.user_id,
            source=done.ack.source,
            step=page.step,
            round=page.round,
        )
    return answered


async def read_replies(store: PgStore, replies: Sequence[InboundSms], actor: str) -> list[PageAck]:
    """The acknowledgements ``replies`` make; ``STOP`` opts its number out at once;
    anything else, or a code from a number the page did not page, is logged and counted."""
    acks: list[PageAck] = []
    for sms in replies:
        reply = read_reply(sms.text)
        if isinstance(reply, OptOut):
            await store.add_opt_out("sms", sms.from_, "reply", actor)
            metrics.REPLIES.labels("opt_out").inc()
            log.info("reply_opt_out", number=mask("sms", sms.from_))
            continue
        target = (
            await store.reply_target(reply.code, sms.from_) if isinstance(reply, Answer) else None
        )
        if target is None or not isinstance(reply, Answer):
            metrics.REPLIES.labels("not_understood").inc()
            log.info(
                "reply_not_understood",
                number=mask("sms", sms.from_),
                why="no open page with that code paged this number"
                if isinstance(reply, Answer)
                else "not a reply code",
            )
            continue
        page, user_id = target
        metrics.REPLIES.labels(reply.action).inc()
        acks.append(
            PageAck(
                alert_key=page.alert_key,
                user_id=user_id,
                action=reply.action,
                source="sms",
                at=sms.at,
            )
        )
    return acks
