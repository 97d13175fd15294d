"""A background task that forgets what no rule needs any more.

Routed-event ids and settled held pages older than the duplicate window, the
page trail (with the acknowledgements and the pages closed that long ago) and
the audit log older than their retention, and counted sends
older than the longest rate-limit window, are deleted every
``ROUTER_JANITOR_INTERVAL_SECONDS``.
Any router may run it; the deletes are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import structlog

from router.errors import RouterError
from router.settings import Settings

log = structlog.get_logger("router.janitor")


class Purgeable(Protocol):
    async def purge(
        self,
        routed_older_than: float,
        sends_older_than: float,
        held_older_than: float = 0,
        trail_older_than: float = 0,
        audit_older_than: float = 0,
    ) -> None: ...


async def run_janitor(store: Purgeable, settings: Settings, stop: asyncio.Event) -> None:
    """Purge every interval until ``stop`` is set; a failed purge is logged and retried later."""
    longest_window = max(
        bucket.window_seconds for buckets in settings.rate_limits().values() for bucket in buckets
    )
    while not stop.is_set():
        try:
            # Settled held pages are kept as long as routed events, so a batch
            # redelivered within that time cannot hold the same page again.
            await store.purge(
                settings.dedup_window_seconds,
                longest_window,
                settings.dedup_window_seconds,
                settings.trail_retention_seconds,
                audit_older_than=settings.audit_retention_seconds,
            )
            log.debug("janitor_purged")
        except RouterError as error:
            log.warning("janitor_failed", error=str(error))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.janitor_interval_seconds)
