"""The next batch is routed while the last one's ledger is written: each batch commits its
own offsets, after its ledger, in order, one batch in hand at a time; a stop
finishes the batch in hand first."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError

from router.kafka.overlap import Overlap, next_offsets
from router.metrics import REGISTRY
from tests.conftest import RouterLog

A0, A1 = TopicPartition("alerts", 0), TopicPartition("alerts", 1)


class Consumer:
    """Commits what it is given, in order; fails the commits the test says."""

    def __init__(self, *owned: TopicPartition) -> None:
        self.owned = set(owned)
        self.commits: list[dict[TopicPartition, int]] = []
        self.failing = 0

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.failing:
            self.failing -= 1
            raise KafkaConnectionError("broker gone")
        self.commits.append(dict(offsets))


def records(partition: int, *offsets: int) -> list[ConsumerRecord[Any, Any]]:
    return [
        ConsumerRecord("alerts", partition, o, 0, 0, None, b"{}", None, 0, 2, ()) for o in offsets
    ]


class Ledger:
    """A ledger write the test lets finish; notes when it was written."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name
        self.gate = asyncio.Event()

    async def __call__(self) -> None:
        await self.gate.wait()
        self.log.append(f"{self.name} written")


def written(log: list[str], name: str) -> Ledger:
    """A ledger write that finishes as soon as it is awaited."""
    ledger = Ledger(log, name)
    ledger.gate.set()
    return ledger


def test_a_batch_commits_the_next_offset_of_each_of_its_partitions() -> None:
    assert next_offsets([*records(0, 5, 7, 6), *records(1, 2)]) == {A0: 8, A1: 3}


async def test_the_commit_follows_the_ledger_and_names_only_the_batch_own_offsets() -> None:
    consumer, log = Consumer(A0), []
    overlap = Overlap(drain_seconds=5)
    first = Ledger(log, "first")
    await overlap.hand_over(first, consumer, {A0: 10})
    assert consumer.commits == [], "handed over: the next batch is routed meanwhile"
    first.gate.set()
    await overlap.drain()
    assert log == ["first written"] and consumer.commits == [{A0: 10}]


async def test_one_batch_is_in_hand_at_a_time_and_commits_keep_their_order() -> None:
    consumer, log = Consumer(A0, A1), []
    overlap = Overlap(drain_seconds=5)
    first, second = Ledger(log, "first"), Ledger(log, "second")
    await overlap.hand_over(first, consumer, {A0: 10})
    handing = asyncio.create_task(overlap.hand_over(second, consumer, {A1: 4}))
    await asyncio.sleep(0.01)
    assert not handing.done(), "the second batch waits for the first one's ledger and commit"
    first.gate.set()
    await handing
    second.gate.set()
    await overlap.drain()
    assert log == ["first written", "second written"]
    assert consumer.commits == [{A0: 10}, {A1: 4}]


async def test_the_wait_for_the_batch_before_is_measured_for_operators() -> None:
    def waits() -> tuple[float, float]:
        count = REGISTRY.get_sample_value("router_ledger_wait_seconds_count")
        total = REGISTRY.get_sample_value("router_ledger_wait_seconds_sum")
        assert count is not None and total is not None
        return count, total

    consumer, log = Consumer(A0, A1), []
    overlap = Overlap(drain_seconds=5)
    first = Ledger(log, "first")
    count, total = waits()
    await overlap.hand_over(first, consumer, {A0: 10})
    assert waits()[0] == count + 1, "every hand-over is counted, a wait of nothing too"
    handing = asyncio.create_task(overlap.hand_over(written(log, "second"), consumer, {A1: 4}))
    await asyncio.sleep(0.2)
    first.gate.set()
    await handing
    await overlap.drain()
    after_count, after_total = waits()
    assert after_count == count + 2
    assert 0.2 <= after_total - total < 5, "the second batch waited for the first's ledger"


async def test_a_batch_handed_over_while_stopping_is_finished_before_the_handler_returns() -> None:
    consumer, log = Consumer(A0), []
    overlap = Overlap(drain_seconds=5)
    overlap.stopping = True
    ledger = written(log, "last")
    await overlap.hand_over(ledger, consumer, {A0: 3})
    assert log == ["last written"] and consumer.commits == [{A0: 3}]


async def test_a_ledger_that_outlasts_the_drain_is_not_committed_and_says_so(
    router_log: RouterLog,
) -> None:
    consumer, log = Consumer(A0), []
    overlap = Overlap(drain_seconds=0.05)
    await overlap.hand_over(Ledger(log, "stuck"), consumer, {A0: 3})
    await overlap.drain()
    assert consumer.commits == [] and log == []
    assert [e["event"] for e in router_log()] == ["batch_ledger_unfinished"]


async def test_a_commit_lost_to_an_outage_is_made_with_the_next_batch(
    router_log: RouterLog,
) -> None:
    consumer, log = Consumer(A0, A1), []
    consumer.failing = 1
    overlap = Overlap(drain_seconds=5)
    first, second = written(log, "first"), written(log, "second")
    await overlap.hand_over(first, consumer, {A0: 10})
    await overlap.drain()
    assert consumer.commits == [] and "commit_failed" in [e["event"] for e in router_log()]
    await overlap.hand_over(second, consumer, {A1: 4})
    await overlap.drain()
    assert consumer.commits == [{A0: 10, A1: 4}]


async def test_a_failed_commit_of_a_partition_given_up_is_not_carried() -> None:
    consumer, log = Consumer(A0, A1), []
    consumer.failing = 1
    overlap = Overlap(drain_seconds=5)
    first, second = written(log, "first"), written(log, "second")
    await overlap.hand_over(first, consumer, {A0: 10})
    await overlap.drain()
    consumer.owned = {A1}  # a rebalance moved alerts-0 to another worker
    await overlap.hand_over(second, consumer, {A1: 4})
    await overlap.drain()
    assert consumer.commits == [{A1: 4}]


async def test_after_a_batch_given_up_at_a_drain_nothing_later_is_committed_until_reassigned(
    router_log: RouterLog,
) -> None:
    consumer, log = Consumer(A0), []
    overlap = Overlap(drain_seconds=0.05)
    await overlap.hand_over(Ledger(log, "stuck"), consumer, {A0: 3})
    await overlap.drain()  # a stop that could not wait longer
    later = written(log, "later")
    await overlap.hand_over(later, consumer, {A0: 7})
    await overlap.drain()
    assert consumer.commits == [], "committing 7 would skip the records of the stuck batch"
    assert "commit_withheld" in [e["event"] for e in router_log()]
    overlap.assigned()  # consuming restarts from the committed offsets
    again = written(log, "again")
    await overlap.hand_over(again, consumer, {A0: 3})
    await overlap.drain()
    assert consumer.commits == [{A0: 3}]


async def test_a_drain_waits_for_the_batch_being_routed_and_then_for_its_commit() -> None:
    consumer, log = Consumer(A0), []
    overlap = Overlap(drain_seconds=5)
    overlap.routing()  # a handler is routing a batch
    draining = asyncio.create_task(overlap.drain())
    await asyncio.sleep(0.01)
    assert not draining.done()
    ledger = written(log, "routed")
    await overlap.hand_over(ledger, consumer, {A0: 5})
    overlap.routed()
    await draining
    assert consumer.commits == [{A0: 5}], "committed before the partitions are given up"


async def test_offsets_of_a_partition_no_longer_ours_are_left_out_of_the_commit() -> None:
    consumer, log = Consumer(A1), []
    overlap = Overlap(drain_seconds=5)
    ledger = written(log, "split")
    await overlap.hand_over(ledger, consumer, {A0: 9, A1: 4})
    await overlap.drain()
    assert consumer.commits == [{A1: 4}]
