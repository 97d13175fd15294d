"""What a batch of alert records becomes: each record's settled outcome (kept for a
retry) and the batch's result (for the ledger, the logs and the tests)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from router.routing.dlq import DeadLetter
from router.routing.pipeline import Planned, Routed
from router.routing.recording import Ledger


class Settled(NamedTuple):
    """What one consumed alert record becomes, fixed by the first attempt at it: its
    plan (the rate limits still to apply), or its final outcome; and that attempt's clock.
    A named tuple: one is made for every record."""

    outcome: Planned | Routed | DeadLetter
    now: datetime


@dataclass
class BatchResult:
    """What one batch produced, for logs and tests."""

    events: int = 0
    rejected: int = 0
    jobs: int = 0
    decisions: int = 0
    routed: list[Routed] = field(default_factory=list)
    #: What the batch still owes PostgreSQL (see :meth:`Worker.record`).
    ledger: Ledger = field(default_factory=Ledger)
    #: Its ledger being written (from :meth:`Worker.route` on).
    recording: asyncio.Future[None] | None = None


def merge_results(results: list[BatchResult]) -> BatchResult:
    """One result for batches handled in parts (record by record)."""
    merged = BatchResult()
    for result in results:
        merged.events += result.events
        merged.rejected += result.rejected
        merged.jobs += result.jobs
        merged.decisions += result.decisions
        merged.routed += result.routed
        merged.ledger.extend(result.ledger)
    return merged
