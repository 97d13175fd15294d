"""Held pages out: every worker runs :class:`HeldDelivery` on a short period.

One round: claim the due pages (``FOR UPDATE SKIP LOCKED``, so two workers never
take the same page), read their users and methods, plan the digests
(:func:`router.held.digest.plan_delivery`), count them against the rate limits, publish
jobs and decisions and wait for every acknowledgement, then record how each
page ended, all in the claim's transaction. A crash between publishing and
recording rolls the claim back; the next round sends the same digest again, with
the same ``job_id`` (it is derived from the events it carries), so delivery
workers drop the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog
from aiokafka.errors import KafkaError

from router import metrics
from router.db.store import PgStore
from router.delivery.trail import round_trail
from router.errors import RouterError
from router.held.digest import Outcome, plan_delivery, settle
from router.kafka.publish import Publisher
from router.kafka.records import publish_round
from router.routing.rules import RoutingOptions
from router.settings import Settings

log = structlog.get_logger("router.held")


class HeldDelivery:
    """Sends due held pages as digests; safe to run in every worker at once."""

    def __init__(
        self,
        store: PgStore,
        publisher: Publisher,
        settings: Settings,
        clock: Callable[[], datetime],
        *,
        options: RoutingOptions | None = None,
        after_publish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._settings = settings
        self._clock = clock
        # The same options routing and failover read (the wiring builds them once).
        self._options = options if options is not None else settings.routing_options()
        self._limits = settings.rate_limits()
        # A test's stand-in for a crash between the acks and the commit.
        self._after_publish = after_publish

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver what is due every ``ROUTER_HELD_POLL_SECONDS`` until ``stop``."""
        while not stop.is_set():
            try:
                outcome = await self.deliver_due()
                if outcome.jobs or outcome.refused:
                    log.info(
                        "held_pages_delivered",
                        digests=len(outcome.jobs),
                        pages_sent=len(outcome.sent),
                        pages_refused=len(outcome.refused),
                        pages_postponed=len(outcome.postponed),
                    )
                counts = await self._store.held_counts()
                for transport in ("email", "sms", "webhook"):
                    metrics.HELD.labels(transport).set(counts.get(transport, 0))
            except (RouterError, KafkaError, OSError) as error:
                log.warning("held_delivery_failed", error=str(error), retry_in_seconds=self._poll)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll)

    @property
    def _poll(self) -> float:
        return self._settings.held_poll_seconds

    async def deliver_due(self, user_id: str | None = None, force: bool = False) -> Outcome:
        """One round. ``force`` (``router held flush``): every held page of ``user_id``,
        now, whatever the quiet window or the limits (refusals and expiry still apply)."""
        now = self._clock()
        async with self._store.claim_held(now, user_id, everything=force) as claim:
            if not claim.pages:
                return Outcome()
            directory = await self._store.directory_for({p.user_id for p in claim.pages})
            later = {
                p.event.alert_key(): p.held_at for p in claim.pages if p.reason == "notify_after"
            }
            answered = await self._store.answered_since(later) if later else {}
            plan = plan_delivery(
                claim.pages,
                directory,
                now,
                self._options,
                max_age=timedelta(seconds=self._settings.held_max_age_seconds),
                force=force,
                answered=answered,
            )
            rate = await claim.reserve([d.send() for d in plan.digests], self._limits, now)
            outcome = settle(plan, rate.allowed, rate.retry_at, now)
            await self._publish(outcome)
            await self._store.write_trail(round_trail(outcome.jobs, outcome.decisions))
            if self._after_publish is not None:
                await self._after_publish()
            await claim.settle(outcome, now)
        for decision in outcome.decisions:
            metrics.DECISIONS.labels(decision.outcome, decision.reason or "").inc()
        for job in outcome.jobs:
            metrics.JOBS.labels(job.transport).inc()
        return outcome

    async def _publish(self, outcome: Outcome) -> None:
        await publish_round(
            self._publisher,
            self._settings,
            "held",
            outcome.jobs,
            outcome.decisions,
            "The broker did not take the held pages' digests ({failure}); they stay held "
            "and are tried again next round.",
        )
