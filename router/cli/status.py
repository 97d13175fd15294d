"""``router status``: does the configured broker and database answer, is the schema current,
who is in the consumer groups, and how far behind are they.

:func:`gather` asks Kafka and PostgreSQL (I/O, each failure caught and
reported, never raised); :func:`render` and :func:`healthy` are pure.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.group import MemberAssignment

from router.cli.table import render as table
from router.db import sql
from router.db.store import PgStore
from router.errors import RouterError
from router.kafka.security import client_options
from router.redact import redact_dsn
from router.settings import Settings


def _error(error: BaseException, dsn: str | None = None) -> str:
    text = str(error) if isinstance(error, RouterError) else f"{type(error).__name__}: {error}"
    return redact_dsn(text, dsn)  # a driver's message may quote the DSN it was given


async def _database(settings: Settings) -> dict[str, Any]:
    url = settings.database_url.get_secret_value()
    report: dict[str, Any] = {"ok": False, "url": redact_dsn(url)}
    try:
        store = await asyncio.wait_for(PgStore.connect(url, min_size=1, max_size=1), timeout=10)
    except Exception as error:
        report["error"] = _error(error, url)
        return report
    try:
        version = await store.schema_version()
        report.update(
            schema_version=version,
            schema_expected=sql.latest_version(),
            schema_current=version >= sql.latest_version(),
        )
        report["ok"] = report["schema_current"]
        if not report["ok"]:
            report["error"] = "the schema is behind; run `router db migrate`"
    except Exception as error:
        report["error"] = _error(error, url)
    finally:
        await store.close()
    return report


def _members(described: Any) -> tuple[str, list[dict[str, Any]]]:
    group = described.to_object()["groups"][0]
    members = []
    for member in group["members"]:
        partitions = None  # some brokers (Tansu) do not report assignments
        if member["member_assignment"]:
            assignment = MemberAssignment.decode(member["member_assignment"])
            partitions = sorted(p for _, parts in assignment.assignments for p in parts)
        members.append(
            {
                "member_id": member["member_id"],
                "client_id": member["client_id"],
                "host": member["client_host"],
                "partitions": partitions,
            }
        )
    return group["state"], members


async def _group(
    settings: Settings, admin: AIOKafkaAdminClient, group_id: str, topic: str
) -> dict[str, Any]:
    report: dict[str, Any] = {"group_id": group_id, "topic": topic}
    try:
        [described] = await admin.describe_consumer_groups([group_id])
        report["state"], report["members"] = _members(described)
    except Exception as error:
        report.update(state="unknown", members=[], error=_error(error))
    # Committed offsets through a group client (not the admin's OffsetFetch, which
    # some brokers answer in a form aiokafka cannot read); it joins nothing.
    probe = AIOKafkaConsumer(
        **client_options(settings), group_id=group_id, enable_auto_commit=False
    )
    try:
        await probe.start()
        parts = [TopicPartition(topic, p) for p in sorted(probe.partitions_for_topic(topic) or [])]
        ends = await probe.end_offsets(parts) if parts else {}
        lag = {}
        for tp in parts:
            committed = await probe.committed(tp)
            lag[str(tp.partition)] = max(0, ends[tp] - (committed or 0))
        report["lag"] = lag
        report["total_lag"] = sum(lag.values())
    except Exception as error:
        report.setdefault("error", _error(error))
    finally:
        await probe.stop()
    return report


async def _kafka(settings: Settings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    report: dict[str, Any] = {"ok": False, "bootstrap_servers": settings.kafka_bootstrap_servers}
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), timeout=15)
        cluster = await admin.describe_cluster()
        report.update(ok=True, brokers=len(cluster.get("brokers", [])))
    except Exception as error:
        report["error"] = _error(error)
        await admin.close()
        return report, []
    try:
        groups = [
            await _group(settings, admin, settings.group_id, settings.topic_alerts),
            await _group(
                settings,
                admin,
                settings.contact_events_group_id(),
                settings.topic_contact_events,
            ),
            await _group(settings, admin, settings.status_group_id(), settings.topic_status),
        ]
    finally:
        await admin.close()
    return report, groups


async def gather(settings: Settings) -> dict[str, Any]:
    """Everything ``router status`` reports, as one JSON-ready object."""
    (broker, groups), database = await asyncio.gather(_kafka(settings), _database(settings))
    status = {"broker": broker, "database": database, "groups": groups}
    status["ok"] = healthy(status)
    return status


def healthy(status: dict[str, Any]) -> bool:
    """All is well: the broker answers, and the database answers with a current schema."""
    return bool(status["broker"]["ok"] and status["database"]["ok"])


def render(status: dict[str, Any]) -> str:
    """The status as tables for a terminal."""
    broker, database = status["broker"], status["database"]
    rows = [
        [
            "kafka",
            "ok" if broker["ok"] else "DOWN",
            broker["bootstrap_servers"]
            + (f" ({broker['brokers']} broker(s))" if broker["ok"] else f": {broker['error']}"),
        ],
        [
            "postgresql",
            "ok" if database["ok"] else "DOWN",
            database["url"]
            + (
                f" (schema {database['schema_version']} of {database['schema_expected']})"
                if "schema_version" in database
                else ""
            )
            + (f": {database['error']}" if database.get("error") else ""),
        ],
    ]
    out = [table(["PART", "STATE", "DETAIL"], rows, max_width=160)]
    for group in status["groups"]:
        members = [
            [
                m["member_id"],
                m["host"] or "-",
                "-" if m["partitions"] is None else ",".join(map(str, m["partitions"])) or "none",
            ]
            for m in group["members"]
        ] or [["(no members)", "", ""]]
        lag = group.get("lag", {})
        out.append(
            f"\ngroup {group['group_id']} on {group['topic']}: {group['state']}, "
            f"lag {group.get('total_lag', '?')} ("
            + ", ".join(f"p{p}={n}" for p, n in lag.items())
            + ")"
            + (f"; {group['error']}" if group.get("error") else "")
        )
        out.append(table(["MEMBER", "HOST", "PARTITIONS"], members, max_width=80))
    out.append("\nall well" if status["ok"] else "\nSOMETHING IS DOWN")
    return "\n".join(out)
