"""Flood: alerts offered at ten times what one worker routes, for a minute; the worker
stays bounded and ready, the lag grows and drains, and nothing is lost.

    python -m tests.flood                       # 10x the measured capacity for 60 s
    python -m tests.flood --factor 10 --seconds 60 --users 1000

1. Capacity: a backlog of ``--probe-events`` alerts is routed by one `router run`
   worker; its rate (events/s, between the first and the last job) is the capacity.
2. Flood: alerts are offered at ``--factor`` times that rate for ``--seconds`` by a
   producer in its own process (bounded, loopback only: every 50 ms it sends what is
   due as whole record batches, one per partition, and awaits them), while the
   worker's RSS, the lag (alerts offered minus alerts routed) and ``/readyz`` are
   sampled twice a second. A producer sharing this process's event loop with the
   follower reached only about 2.4x on two CPUs; prepared batches from a process of
   their own reach the factor.
3. After the flood, a probe alert every 20 ms measures latency (alert produced to
   job produced, record timestamps); the recovery time is when the p99 of a
   2-second window of probes first falls under 1 s and stays there.

Printed: capacity, offered rate, events, peak RSS, peak lag, drain time (flood end to
lag 0), recovery time, readiness failures, and lost (alerts without both jobs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.chaos import _cli, _create_topics, _start


@dataclass
class FloodResult:
    capacity: float = 0.0
    offered_rate: float = 0.0
    events: int = 0
    peak_rss_mb: float = 0.0
    peak_lag: int = 0
    drain_seconds: float = 0.0
    recovery_seconds: float | None = None
    readiness_failures: int = 0
    samples: int = 0
    lost: int = 0
    probe_p99_ms: list[float] = field(default_factory=list)

    def summary(self) -> str:
        recovery = "never" if self.recovery_seconds is None else f"{self.recovery_seconds:.1f} s"
        return (
            f"flood: capacity {self.capacity:.0f} ev/s, offered {self.offered_rate:.0f} ev/s "
            f"({self.events} events); peak RSS {self.peak_rss_mb:.0f} MB, peak lag "
            f"{self.peak_lag} events, drained {self.drain_seconds:.0f} s after the flood, "
            f"p99 under 1 s {recovery} after the flood; /readyz not ready in "
            f"{self.readiness_failures} of {self.samples} samples; {self.lost} lost"
        )


_EVENT = (
    b'{"event_id": "f-%d", "kind": "down", "severity": "critical", '
    b'"user_ids": ["flood-%d"], "title": "flood %d"}'
)


@dataclass(frozen=True)
class _Offer:
    """The flood producer, run in a process of its own: events ``first``, ``first + 1``,
    ... at ``rate`` per second for ``seconds``."""

    bootstrap: str
    topic: str
    users: int
    first: int
    rate: float
    seconds: float

    def run(self, offered: Synchronized[int], offering: Synchronized[float]) -> None:
        """``offered`` counts the acknowledged events, ``offering`` the seconds from the
        first send to the last acknowledgement."""
        asyncio.run(self._offer(offered, offering))

    async def _offer(self, offered: Synchronized[int], offering: Synchronized[float]) -> None:
        bootstrap, topic, users, first = self.bootstrap, self.topic, self.users, self.first
        rate, seconds = self.rate, self.seconds
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=False, max_batch_size=1 << 20
        )
        await producer.start()
        try:
            partitions = sorted(await producer.partitions_for(topic))
            start = time.monotonic()
            n = first
            while (elapsed := time.monotonic() - start) < seconds:
                due = first + int(rate * elapsed)
                sends = []
                for i, partition in enumerate(partitions):
                    batch = producer.create_batch()
                    for m in range(n + i, due, len(partitions)):
                        if (
                            batch.append(key=None, value=_EVENT % (m, m % users, m), timestamp=None)
                            is None
                        ):
                            raise RuntimeError("a flood batch overflowed; lower the tick")
                    if batch.record_count():
                        sends.append(await producer.send_batch(batch, topic, partition=partition))
                await asyncio.gather(*sends)
                offered.value += max(0, due - n)
                offering.value = time.monotonic() - start
                n = max(n, due)
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()


def _event(n: int, users: int, prefix: str = "f") -> bytes:
    return json.dumps(
        {
            "event_id": f"{prefix}-{n}",
            "kind": "down",
            "severity": "critical",
            "user_ids": [f"flood-{n % users}"],
            "title": f"flood {n}",
        }
    ).encode()


class _Routed:
    """Follows the job topics: which events have their jobs, and probe latencies."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._topics = topics
        self.pairs: set[bytes] = set()
        self.first_ms = 0
        self.last_ms = 0
        self.probes: dict[str, float] = {}  # probe event id -> job timestamp (s)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer.topics()
        parts = [
            TopicPartition(t, p)
            for t in self._topics
            for p in self._consumer.partitions_for_topic(t) or {0}
        ]
        self._consumer.assign(parts)
        await self._consumer.seek_to_beginning(*parts)
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=20_000)
            for records in batch.values():
                for record in records:
                    job = orjson.loads(record.value)
                    if job["event_id"].startswith("probe-"):
                        self.probes.setdefault(job["event_id"], record.timestamp / 1000)
                        continue
                    self.pairs.add(f"{job['event_id']} {job['transport']}".encode())
                    self.first_ms = self.first_ms or record.timestamp
                    self.last_ms = max(self.last_ms, record.timestamp)

    def routed(self) -> int:
        """Flood events (not probes) with both their jobs (email and SMS)."""
        return len(self.pairs) // 2

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def run_flood(
    env: dict[str, str],
    workdir: Path,
    *,
    factor: float,
    seconds: float,
    users: int,
    probe_events: int,
    timeout: float,
) -> FloodResult:
    from router.dev.embedded import free_port

    result = FloodResult()
    port = free_port()
    env = {
        **env,
        "ROUTER_HTTP_PORT": str(port),
        "ROUTER_RATE_LIMIT_SMS_COUNT": "100000000",
        "ROUTER_RATE_LIMIT_EMAIL_COUNT": "100000000",
        "ROUTER_LOG_LEVEL": "WARNING",
        "ROUTER_KAFKA_AUTO_OFFSET_RESET": "earliest",
    }
    bootstrap = env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    topics = [env.get("ROUTER_TOPIC_EMAIL", "deliveries.email")]
    topics.append(env.get("ROUTER_TOPIC_SMS", "deliveries.sms"))
    alerts = env.get("ROUTER_TOPIC_ALERTS", "alerts")
    _cli(env, "db", "migrate")
    lines = ["user_id,transport,value"]
    for n in range(users):
        lines += [f"flood-{n},email,flood-{n}@example.com", f"flood-{n},sms,+1415557{n:04d}"]
    (workdir / "contacts.csv").write_text("\n".join(lines) + "\n")
    _cli(
        env,
        "contacts",
        "import",
        str(workdir / "contacts.csv"),
        "--create-users",
        "--allow-landline",
    )
    await _create_topics(env)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    routed = _Routed(bootstrap, topics)
    await routed.start()
    worker = _start(env, workdir / "flood-router.log")
    try:
        # 1. Capacity, from a backlog.
        sent = 0
        for n in range(probe_events):
            await producer.send(alerts, _event(n, users))
        await producer.flush()
        sent = probe_events
        deadline = time.monotonic() + timeout
        while routed.routed() < sent:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker stopped or stalled; see {workdir}")
            await asyncio.sleep(0.2)
        result.capacity = sent / max(0.001, (routed.last_ms - routed.first_ms) / 1000)
        print(f"capacity {result.capacity:.0f} ev/s", file=sys.stderr, flush=True)

        # 2. The flood, from a producer process of its own, sampled.
        target = factor * result.capacity
        spawn = multiprocessing.get_context("spawn")
        offered, offering = spawn.Value("q", 0), spawn.Value("d", 0.0)
        offer = spawn.Process(
            target=_Offer(bootstrap, alerts, users, sent, target, seconds).run,
            args=(offered, offering),
            daemon=True,
        )
        flood_start = time.monotonic()
        offer.start()
        next_sample = flood_start
        while offer.is_alive():
            await asyncio.sleep(max(0.0, next_sample - time.monotonic()))
            next_sample += 0.5
            await _sample(result, worker.pid, port, sent + offered.value, routed)
        if offer.exitcode != 0:
            raise RuntimeError(f"the flood producer failed (exit {offer.exitcode})")
        flood_end, flood_end_wall = time.monotonic(), time.time()
        result.offered_rate = offered.value / offering.value
        sent += offered.value
        result.events = sent
        print(f"flood over: {sent} offered", file=sys.stderr, flush=True)

        # 3. Probes until the latency is back under 1 s and the lag drained.
        probe_sent: dict[str, float] = {}
        probe = 0
        drained_at: float | None = None
        windows: list[tuple[float, float]] = []  # (window end, p99 ms)
        while time.monotonic() < deadline:
            event_id = f"probe-{probe}"
            probe_sent[event_id] = time.time()
            await (await producer.send(alerts, _event(probe, users, "probe")))
            probe += 1
            await asyncio.sleep(0.02)
            if time.monotonic() >= next_sample:
                next_sample += 0.5
                await _sample(result, worker.pid, port, sent, routed)
                if drained_at is None and routed.routed() >= sent:
                    drained_at = time.monotonic()
            now = time.time()
            window = [
                (routed.probes[e] - t) * 1000
                for e, t in probe_sent.items()
                if now - 4 <= t < now - 2 and e in routed.probes
            ]
            if len(window) >= 20 and (not windows or now - windows[-1][0] >= 2):
                p99 = statistics.quantiles(window, n=100)[98]
                windows.append((now, p99))
                result.probe_p99_ms.append(round(p99))
            if (
                drained_at is not None
                and len(windows) >= 3
                and all(p < 1000 for _, p in windows[-3:])
            ):
                break
        else:
            raise TimeoutError(f"did not drain within {timeout} s; see {workdir}")
        assert drained_at is not None
        result.drain_seconds = drained_at - flood_end
        recovered = next(
            (end for i, (end, _) in enumerate(windows) if all(p < 1000 for _, p in windows[i:])),
            None,
        )
        if recovered is not None:  # the window's probes were sent 2-4 s before its end
            result.recovery_seconds = max(0.0, recovered - 2 - flood_end_wall)
        result.lost = sent - routed.routed()
        return result
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except Exception:
            worker.kill()
        await routed.stop()
        await producer.stop()


async def _sample(result: FloodResult, pid: int, port: int, sent: int, routed: _Routed) -> None:
    result.samples += 1
    result.peak_rss_mb = max(result.peak_rss_mb, _rss_mb(pid))
    result.peak_lag = max(result.peak_lag, sent - routed.routed())
    if not await asyncio.to_thread(_ready, port):
        result.readiness_failures += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--factor", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--probe-events", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    from router.dev.embedded import EmbeddedKafka, EmbeddedPostgres, embedded_env

    with tempfile.TemporaryDirectory(prefix="router-flood-") as tmp:
        workdir = Path(os.environ.get("FLOOD_WORKDIR") or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        with (
            EmbeddedKafka(log_path=workdir / "tansu.log") as kafka,
            EmbeddedPostgres(workdir / "pg") as postgres,
        ):
            env = {**embedded_env(kafka, postgres), "ROUTER_LOG_FORMAT": "json"}
            result = asyncio.run(
                run_flood(
                    env,
                    workdir,
                    factor=args.factor,
                    seconds=args.seconds,
                    users=args.users,
                    probe_events=args.probe_events,
                    timeout=args.timeout,
                )
            )
    print(result.summary())
    return 0 if result.lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
