"""What the command modules share: one line per record, the store for one
command, the method filter flags, publishing one message. The command modules
use this module and never each other."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from router.cli.values import KINDS, pairs, settings
from router.db.api_bulk import BulkApiStore
from router.directory.manage import MethodFilter
from router.directory.models import ContactMethod, Shift, User
from router.errors import KafkaSetupError
from router.settings import Settings


def print_record(record: BaseModel, as_json: bool, line: str) -> None:
    """``record`` as one JSON line, or ``line`` for a person."""
    print(record.model_dump_json() if as_json else line)


def describe_method(method: ContactMethod) -> str:
    """One readable line for a contact method."""
    flags = [
        "primary" if method.is_primary else None,
        "verified" if method.verified else "unverified",
        "disabled" if method.disabled else None,
        "muted" if method.muted else None,
        f"muted until {method.mute_until.isoformat()}" if method.mute_until else None,
        "suppress " + ",".join(k for k in (*KINDS, "all") if getattr(method, f"suppress_{k}"))
        if any(getattr(method, f"suppress_{k}") for k in (*KINDS, "all"))
        else None,
        f"min {method.min_severity}" if method.min_severity else None,
    ]
    label = f" [{method.label}]" if method.label else ""
    return (
        f"{method.id}  {method.user_id}  {method.transport:<7} {method.value}{label}  "
        f"({', '.join(f for f in flags if f)})"
    )


def describe_user(user: User) -> str:
    """One readable line for a user."""
    quiet = (
        f"quiet {user.quiet_hours_start:%H:%M}-{user.quiet_hours_end:%H:%M} "
        f"(bypass {user.quiet_bypass}, {user.quiet_action})"
        if user.quiet_hours_start and user.quiet_hours_end
        else "no quiet hours"
    )
    return (
        f"{user.id}  {user.timezone}  {quiet}  mode {user.delivery_mode}  "
        f"order {','.join(user.channel_order)}"
    )


def describe_shift(shift: Shift) -> str:
    """One readable line for a shift."""
    return (
        f"{shift.schedule_id}  {shift.user_id}  {shift.starts_at.isoformat()} -> "
        f"{shift.ends_at.isoformat()}"
    )


def cli_actor() -> str:
    """The audit log's actor for a command: ``cli:<os user>``."""
    try:
        return "cli:" + getpass.getuser()
    except (OSError, KeyError):
        return "cli:unknown"


async def _with_store(action: Callable[[BulkApiStore], Awaitable[None]]) -> None:
    url = settings().database_url.get_secret_value()
    store = await BulkApiStore.connect(url, min_size=1, max_size=2)
    try:
        await store.check_schema()
        await action(store)
    finally:
        await store.close()


def run_with_store(action: Callable[[BulkApiStore], Awaitable[None]]) -> None:
    """Run ``action`` with a store on the configured database, its schema checked first
    (a :class:`BulkApiStore`: with the directory's writes that leave an audit row)."""
    asyncio.run(_with_store(action))


def method_filter(args: argparse.Namespace) -> MethodFilter:
    """The filter flags shared by ``contacts list``, ``count`` and ``export``."""
    return MethodFilter(
        user_id=args.user,
        transport=args.transport,
        verified=args.verified,
        search=args.search,
        metadata=pairs(args.meta, "=", "--meta") or None,
        tag=args.tag,
    )


async def publish_one(config: Settings, topic: str, job: BaseModel, key: str) -> None:
    """Publish one job and wait for the broker's acknowledgement."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from router.kafka.security import client_options

    producer = AIOKafkaProducer(
        **client_options(config),
        acks="all",
        enable_idempotence=config.kafka_enable_idempotence,
    )
    try:
        await producer.start()
        await producer.send_and_wait(topic, job.model_dump_json().encode(), key=key.encode())
    except KafkaError as error:
        raise KafkaSetupError(
            f"Could not publish to {topic} on {config.kafka_bootstrap_servers}: {error}. "
            "Check ROUTER_KAFKA_BOOTSTRAP_SERVERS, then run verify again."
        ) from error
    finally:
        await producer.stop()
