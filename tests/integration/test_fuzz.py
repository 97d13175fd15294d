"""Fuzz: hostile input through the real worker on the real broker; every input is accounted for.

Hypothesis generates arbitrary bytes, hostile JSON (NUL bytes, RTL overrides,
emoji, lone surrogates, NaN, unknown fields, wrong types) and alert-shaped
objects with hostile values; a fixed set of specials (deep nesting, invalid
UTF-8, empty and null values, a 300 KB and a 5 MB value) is added once each.
Each input carries a ``fuzz-id`` header; afterwards every input must have
ended as a dead letter (which keeps the header) or as decisions (alert-shaped
ones get the event id ``fuzz-<n>``), and a sentinel alert on every partition
must be routed: nothing dropped, no partition stalled.

``ROUTER_FUZZ_EXAMPLES`` sets how many inputs Hypothesis generates (default 300;
the figure in docs/guarantees.md comes from 10,000).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import RouterProcess, add_contact, cli_ok, collect, wait_for_topics
from tests.integration.test_end_to_end import alert, topics

EXAMPLES = int(os.environ.get("ROUTER_FUZZ_EXAMPLES", "300"))

HOSTILE_TEXT = st.one_of(
    st.text(max_size=120),
    st.sampled_from(
        [
            "\x00",
            "a\x00b",
            "\u202etxt.exe",  # right-to-left override
            "\u200f\u05e9\u05dc\u05d5\u05dd",  # RTL mark + Hebrew
            "مرحبا بالعالم",
            "🔥" * 300,
            "👩‍👩‍👧‍👦",
            "\ufeff",
            "\ud800",  # lone surrogate (escaped by json.dumps)
            "' OR 1=1 --",
            "%s%n%x",
            "${jndi:ldap://x}",
        ]
    ),
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(HOSTILE_TEXT, inner, max_size=5),
    max_leaves=25,
)
ALERT_SHAPED = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["down", "up", "first", "diagnostic", "sideways", 1]),
        "severity": st.sampled_from(["critical", "error", "warning", "info", "urgent", None]),
        "title": HOSTILE_TEXT,
        "user_ids": st.lists(st.sampled_from(["fuzzer", "ghost"]) | HOSTILE_TEXT, max_size=3),
    },
    optional={
        "body": HOSTILE_TEXT,
        "labels": st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT | JSON_VALUES, max_size=5),
        "occurred_at": st.sampled_from(
            [
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00",
                "yesterday",
                0,
                # Valid RFC 3339, but no arithmetic on them fits in a datetime.
                "9999-12-31T23:59:59Z",
                "0001-01-01T00:00:00+14:00",
            ]
        ),
        "schedule_id": HOSTILE_TEXT,
        "dedup_key": HOSTILE_TEXT,
        "url": HOSTILE_TEXT,
        "some_future_field": JSON_VALUES,
    },
)
INPUTS = st.one_of(
    st.binary(max_size=600).map(lambda b: ("raw", b)),
    JSON_VALUES.map(lambda v: ("json", v)),
    ALERT_SHAPED.map(lambda d: ("alert", d)),
)

SPECIALS: list[bytes | None] = [
    None,
    b"",
    b"\x00" * 64,
    b"\xff\xfe\xfd not utf-8",
    b'{"event_id": "\xff", "kind": "down"}',
    b"[" * 100_000 + b"]" * 100_000,  # deeper than any parser's recursion limit
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b'{"event_id": "x", "title": "' + b"y" * 300_000 + b'"}',  # over ROUTER_MAX_EVENT_BYTES
    b'{"title": "' + b"z" * (5 * 1024 * 1024) + b'"}',  # 5 MB
    # Alerts for the real user that only a strict JSON reader refuses: the trail's
    # PostgreSQL json cannot hold NaN or Infinity, wherever they stand.
    b'{"event_id": "nan", "kind": "down", "severity": "error", "user_ids": ["fuzzer"], '
    b'"title": "t", "unknown": NaN}',
    b'{"event_id": "inf", "kind": "down", "severity": "error", "user_ids": ["fuzzer"], '
    b'"title": "t", "unknown": {"x": [-Infinity]}}',
    b'{"event_id": "y9999", "kind": "down", "severity": "warning", "user_ids": ["fuzzer"], '
    b'"title": "t", "occurred_at": "9999-12-31T23:59:59Z"}',
]


def generated(count: int) -> list[tuple[str, Any]]:
    """``count`` inputs drawn by Hypothesis (generation only; the property is checked
    on all of them at once, on the real broker)."""
    drawn: list[tuple[str, Any]] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(INPUTS)
    def draw(item: tuple[str, Any]) -> None:
        drawn.append(item)

    draw()
    return drawn


def encode(n: int, item: tuple[str, Any]) -> bytes:
    kind, value = item
    if kind == "raw":
        return bytes(value)
    if kind == "alert":
        value = {**value, "event_id": f"fuzz-{n}"}
    return json.dumps(value).encode()


async def test_every_hostile_input_ends_as_decisions_or_one_dead_letter_and_nothing_stalls(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    # Quiet hours all day: every routed warning computes its quiet window's end.
    cli_ok(router_env, "users", "add", "fuzzer", "--quiet-hours", "00:00-23:59")
    add_contact(router_env, "fuzzer", "email", "fuzzer@example.com")
    t = topics(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    router = start_router({**router_env, "ROUTER_LOG_LEVEL": "WARNING"})
    await wait_for_topics(bootstrap, [t["alerts"]])

    values = [encode(n, item) for n, item in enumerate(generated(EXAMPLES))] + SPECIALS
    alert_shaped = {
        n for n, v in enumerate(values) if v and v.startswith(b"{") and f'"fuzz-{n}"'.encode() in v
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    try:
        acks = [
            await producer.send(
                t["alerts"], value, key=str(n).encode(), headers=[("fuzz-id", str(n).encode())]
            )
            for n, value in enumerate(values)
        ]
        for ack in acks:
            await ack
        for partition in range(3):  # behind everything: each partition must still flow
            await producer.send_and_wait(
                t["alerts"], alert(f"sentinel-{partition}", ["fuzzer"]), partition=partition
            )
    finally:
        await producer.stop()

    def decided(seen: dict[str, list[Any]]) -> set[int]:
        done = set()
        for r in seen[t["decisions"]]:
            event_id = json.loads(r.value)["event_id"]
            if event_id.startswith("fuzz-"):
                done.add(int(event_id.removeprefix("fuzz-")))
        return done

    def accounted(seen: dict[str, list[Any]]) -> set[int]:
        dead = {int(v.decode()) for r in seen[t["dlq"]] for k, v in r.headers if k == "fuzz-id"}
        return dead | decided(seen)

    def sentinels(seen: dict[str, list[Any]]) -> set[str]:
        return {
            json.loads(r.value)["event_id"]
            for r in seen[t["decisions"]]
            if b'"sentinel-' in r.value
        }

    seen = await collect(
        bootstrap,
        [t["dlq"], t["decisions"]],
        until=lambda s: len(accounted(s)) == len(values) and len(sentinels(s)) == 3,
        timeout=120 + len(values) / 50,
        settle=2,
    )
    dead = [int(v.decode()) for r in seen[t["dlq"]] for k, v in r.headers if k == "fuzz-id"]
    assert len(dead) == len(set(dead)), "one dead letter per bad input, never two"
    routed = decided(seen)
    assert not routed & set(dead), "exactly one outcome: never decisions and a dead letter"
    assert routed <= alert_shaped, "only alerts are routed"
    assert accounted(seen) == set(range(len(values))), "every input is accounted for"
    reasons = {dict(r.headers)["router.dlq.reason"].decode() for r in seen[t["dlq"]]}
    print(
        f"\nfuzz: {len(values)} inputs ({EXAMPLES} from Hypothesis, {len(SPECIALS)} specials): "
        f"{len(routed)} routed, {len(dead)} dead letters ({', '.join(sorted(reasons))}), "
        "0 dropped, every partition flowing"
    )
    assert "routing_failed" not in reasons, "no input makes the pipeline raise"
    assert "Traceback" not in router.log()
