"""Due escalation steps out: every worker runs :class:`Escalator` on a short period.

One round, as held pages do it (:mod:`router.held.scheduler`): claim the pages whose
next step is due (``FOR UPDATE SKIP LOCKED``, so two workers never take the same
page), read the step's users and whoever is on call for its schedules, route them
with the same pipeline as step one (every rule, preference, quiet hours, held pages,
rate limits), publish jobs and decisions and wait for every acknowledgement, write
the trail, then move each page to its new step, all in the claim's transaction. A
crash between publishing and moving rolls the claim back; the next round pages the
same step again with the same job ids (derived from the event, the method, the step
and the round), so delivery workers drop the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from aiokafka.errors import KafkaError

from router import metrics
from router.db.store import PgStore
from router.delivery.trail import round_trail
from router.errors import RouterError
from router.kafka.publish import Publisher
from router.kafka.records import publish_round
from router.pages.escalation import Page, PageStep, Stop, next_move
from router.pages.policy import PolicyStep, ScheduleLookup
from router.routing.build import Paging, new_decision
from router.routing.pipeline import finish, plan, sends
from router.routing.rules import RoutingOptions
from router.settings import Settings
from schemas import Decision, DeliveryJob

log = structlog.get_logger("router.pages")


@dataclass
class Round:
    """What one escalation round published."""

    jobs: list[DeliveryJob] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    escalated: list[tuple[str, int, int]] = field(default_factory=list)  # key, step, round
    unacknowledged: list[str] = field(default_factory=list)


class Escalator:
    """Pages due escalation steps; safe to run in every worker at once."""

    def __init__(
        self,
        store: PgStore,
        publisher: Publisher,
        settings: Settings,
        clock: Callable[[], datetime],
        options: RoutingOptions,
        *,
        after_publish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._settings = settings
        self._clock = clock
        self._options = options
        self._limits = settings.rate_limits()
        # A test's stand-in for a crash between the acks and the commit.
        self._after_publish = after_publish

    async def run(self, stop: asyncio.Event) -> None:
        """Page what is due every ``ROUTER_ESCALATION_POLL_SECONDS`` until ``stop``."""
        poll = self._settings.escalation_poll_seconds
        while not stop.is_set():
            try:
                await self.escalate_due()
            except (RouterError, KafkaError, OSError) as error:
                log.warning("escalation_failed", error=str(error), retry_in_seconds=poll)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll)

    async def escalate_due(self) -> Round:
        """One round: every due page takes its next step, or ends unacknowledged."""
        now = self._clock()
        done = Round()
        async with self._store.claim_due_pages(now) as claim:
            if not claim.pages:
                return done
            moves = [(page, next_move(page, now)) for page in claim.pages]
            users: set[str] = set()
            lookups: set[ScheduleLookup] = set()
            for page, move in moves:
                step = _policy_step(page, move)
                users.update(step.user_ids)
                lookups.update(step.lookups(now))
            directory = await self._store.directory_for(users, lookups)
            for page, move in moves:
                step = _policy_step(page, move)
                audience = step.audience(directory.on_call, now)
                if isinstance(move, Stop):
                    done.decisions += [_unacknowledged(page, u, now) for u in audience]
                    done.unacknowledged.append(page.alert_key)
                    continue
                paging = Paging(move.step, move.round, page.reply_code)
                planned = plan(page.event, directory, now, self._options, (paging, audience))
                rate = await claim.reserve(sends(planned), self._limits, now)
                routed = finish(planned, rate)
                await claim.hold(routed.holds)
                done.jobs += routed.jobs
                done.decisions += routed.decisions
                done.escalated.append((page.alert_key, move.step, move.round))
            await self._publish(done)
            await self._store.write_trail(round_trail(done.jobs, done.decisions))
            if self._after_publish is not None:
                await self._after_publish()
            for page, move in moves:
                await claim.move(page, move)
        self._count(done)
        return done

    def _count(self, done: Round) -> None:
        for key, step, round_ in done.escalated:
            metrics.ESCALATIONS.labels(str(step)).inc()
            log.info("page_escalated", alert_key=key, step=step, round=round_)
        for key in done.unacknowledged:
            metrics.UNACKNOWLEDGED.inc()
            log.warning("page_unacknowledged", alert_key=key)
        for decision in done.decisions:
            metrics.DECISIONS.labels(decision.outcome, decision.reason or "").inc()
        for job in done.jobs:
            metrics.JOBS.labels(job.transport).inc()

    async def _publish(self, done: Round) -> None:
        await publish_round(
            self._publisher,
            self._settings,
            "pages",
            done.jobs,
            done.decisions,
            "The broker did not take the escalation round's jobs ({failure}); the steps "
            "stay due and are paged again next round, with the same job ids.",
        )


def _policy_step(page: Page, move: PageStep | Stop) -> PolicyStep:
    assert page.policy is not None, "only escalating pages are claimed"
    return page.policy.step(move.last_step if isinstance(move, Stop) else move.step)


def _unacknowledged(page: Page, user_id: str, now: datetime) -> Decision:
    return new_decision(
        event_id=page.event.event_id,
        user_id=user_id,
        outcome="skipped",
        reason="unacknowledged",
        decided_at=now,
        alert_key=page.alert_key,
        paging=Paging(page.step, page.round, page.reply_code),
    )
