"""Batches overlapped at the consumer: the next batch is routed while the last one's
ledger is written, and each batch commits its own offsets, in order.

FastStream's loop fetches a batch, calls the handler and, by default, commits every
position the consumer has when the handler returns. The alerts subscriber
acknowledges by hand instead: its handler routes the batch (the broker has all of
its output when that returns), then hands the batch's ledger and the commit of the
batch's own offsets to :class:`Overlap`, which runs them while the next batch is
fetched and routed. At most one batch is handed over at a time: the next handler
waits for it before handing over its own, so commits keep their order and
PostgreSQL is never more than one batch behind. A stop waits for the batch being
routed and the one handed over (ledger and commit) first; a rebalance does not
wait (see :class:`OnRebalance`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import structlog
from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from router import metrics

log = structlog.get_logger("router.consume")


def next_offsets(records: Collection[ConsumerRecord[Any, Any]]) -> dict[TopicPartition, int]:
    """The offsets to commit once ``records`` are done: each partition's last one plus one."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


class Overlap:
    """The one batch whose ledger and commit run while the next batch is routed."""

    def __init__(self, drain_seconds: float) -> None:
        self._pending: asyncio.Task[None] | None = None
        self._drain_seconds = drain_seconds
        # Offsets whose commit failed (a broker outage): committed with the next batch's.
        self._carried: dict[TopicPartition, int] = {}
        # Set while a handler routes a batch, so a rebalance or a stop can wait for it.
        self._idle = asyncio.Event()
        self._idle.set()
        # A batch handed over did not finish (given up at a stop): nothing later may
        # be committed past it until the partitions are assigned again.
        self._withheld = False
        #: Set when the consumer stops: a batch handed over then is finished at once.
        self.stopping = False

    def routing(self) -> None:
        """A handler starts routing a batch (see :meth:`routed`)."""
        self._idle.clear()

    def routed(self) -> None:
        """The handler is done with its batch (handed over, or rewound)."""
        self._idle.set()

    async def hand_over(
        self,
        ledger: Callable[[], Awaitable[None]],
        consumer: Any,
        offsets: dict[TopicPartition, int],
    ) -> None:
        """Wait for the batch handed over before (``router_ledger_wait_seconds``), then
        wait for ``ledger`` and commit ``offsets`` after it, in the background (or now,
        when stopping)."""
        with metrics.LEDGER_WAIT.time():
            await self._wait()

        async def finish() -> None:
            try:
                await ledger()
            except asyncio.CancelledError:
                raise
            except Exception:  # the ledger waits out outages itself: this is a bug
                log.exception("batch_ledger_failed")
                self._withhold()
                return
            await self._commit(consumer, offsets)

        if self.stopping:
            await finish()
        else:
            self._pending = asyncio.create_task(finish(), name="router-batch-commit")

    async def drain(self) -> None:
        """At a stop: wait, at most the drain time in all, for the handler routing a
        batch and for the batch handed over (its ledger and commit)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._drain_seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self._drain_seconds)
        pending = self._pending
        if pending is None or pending.done():
            return
        done, _ = await asyncio.wait({pending}, timeout=max(0.0, deadline - loop.time()))
        if not done:
            log.warning(
                "batch_ledger_unfinished",
                waited_seconds=self._drain_seconds,
                hint="its records are not committed, nor any after them; whoever consumes "
                "the partitions next routes them again, with the same job ids",
            )
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
            self._withhold()

    def revoked(self) -> None:
        """The partitions were given up: offsets carried for them are not ours to commit."""
        self._carried = {}

    def assigned(self) -> None:
        """Partitions assigned anew: consuming restarts from the committed offsets."""
        self._withheld = False
        self._carried = {}

    def _withhold(self) -> None:
        self._withheld = True
        self._carried = {}

    async def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            await pending
        except asyncio.CancelledError:
            if not pending.cancelled():
                raise  # this handler is cancelled, not the batch handed over
            self._withhold()
        except Exception:  # finish() logs its own failures: this is a bug
            log.exception("batch_commit_failed")
            self._withhold()

    async def _commit(self, consumer: Any, offsets: dict[TopicPartition, int]) -> None:
        if self._withheld:
            log.warning(
                "commit_withheld",
                partitions=len(offsets),
                hint="an earlier batch's ledger did not finish; its records and these are "
                "routed again from the committed offsets, with the same job ids",
            )
            return
        if not hasattr(consumer, "assignment"):
            await consumer.commit()  # FastStream's test broker: no offsets of its own
            return
        owned = consumer.assignment()
        wanted = {tp: o for tp, o in self._carried.items() if tp in owned}
        for tp, offset in offsets.items():
            if tp in owned:
                wanted[tp] = max(offset, wanted.get(tp, 0))
        if not wanted:
            return
        try:
            await consumer.commit(wanted)
        except KafkaError as error:
            self._carried = {tp: o for tp, o in wanted.items() if tp in consumer.assignment()}
            log.warning(
                "commit_failed",
                error=str(error),
                error_class=type(error).__name__,
                partitions=len(wanted),
                hint="committed with the next batch if the partitions are still ours; "
                "otherwise their next owner routes the records again, with the same job ids",
            )
        else:
            self._carried = {}


class OnRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forgets carried offsets when partitions go, and withheld commits when they come.

    It does not wait for the batch in hand: a rebalance callback that waits holds up
    the whole group's rebalance (on Tansu, every group's: waiting here for a ledger
    during a database or broker fault left all five groups rebalancing for minutes
    in the chaos run). A batch handed over as its partitions move may be routed
    again by their next owner, with the same job ids, as after any crash."""

    def __init__(self, overlap: Overlap) -> None:
        self._overlap = overlap

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """Offsets carried for the partitions given up are not ours to commit."""
        self._overlap.revoked()

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Consuming starts again from the committed offsets."""
        self._overlap.assigned()
