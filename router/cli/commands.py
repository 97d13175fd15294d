"""What the ``router`` subcommands do (contact methods: :mod:`router.cli.contact_commands`,
import and export: :mod:`router.cli.bulk_commands`). ``router.cli.parser`` parses arguments.

Values are checked here before anything is written, so a refused command
changes nothing; every refusal is a :class:`router.errors.RouterError` whose
message names the field, the value and what would be accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from router.cli import table
from router.cli.common import (
    cli_actor,
    describe_shift,
    describe_user,
    print_record,
    run_with_store,
)
from router.cli.values import (
    channel_order,
    duration,
    instant,
    quiet_hours,
    settings,
    timezone,
    user_id,
)
from router.db.api_store import ApiStore
from router.db.migrate import migrate
from router.db.store import PgStore
from router.directory import addresses
from router.errors import InvalidValue, KafkaSetupError


def run(args: argparse.Namespace) -> None:
    """``router run``."""
    import gc

    from router.app import run as run_router

    configured = settings()
    if configured.gc_young_threshold:
        # A routed batch keeps thousands of objects alive until it is published: at
        # Python's 700 the collector would run dozens of times a batch.
        gc.set_threshold(configured.gc_young_threshold, 10, 10)
    asyncio.run(run_router(configured))


def ingest(args: argparse.Namespace) -> None:
    """``router ingest``."""
    from router.app import run_ingest

    asyncio.run(run_ingest(settings()))


def status(args: argparse.Namespace) -> int:
    """``router status``: 0 when the broker and database answer and the schema is current."""
    import json

    from router.cli import status as router_status

    report = asyncio.run(router_status.gather(settings()))
    print(json.dumps(report) if args.json else router_status.render(report))
    return 0 if report["ok"] else 1


def db_migrate(args: argparse.Namespace) -> None:
    """``router db migrate``."""
    applied = asyncio.run(migrate(settings().database_url.get_secret_value()))
    print("applied: " + ", ".join(applied) if applied else "database is up to date")


def _user_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.name is not None:
        changes["name"] = args.name
    if args.timezone is not None:
        changes["timezone"] = timezone(args.timezone)
    if args.quiet_hours is not None:
        changes["quiet_hours_start"], changes["quiet_hours_end"] = quiet_hours(args.quiet_hours)
    if args.no_quiet_hours:
        changes["quiet_hours_start"] = changes["quiet_hours_end"] = None
    if args.quiet_bypass is not None:
        changes["quiet_bypass"] = args.quiet_bypass
    if args.quiet_action is not None:
        changes["quiet_action"] = args.quiet_action
    if args.channel_order is not None:
        changes["channel_order"] = channel_order(args.channel_order)
    if args.delivery_mode is not None:
        changes["delivery_mode"] = args.delivery_mode
    return changes


def users_add(args: argparse.Namespace) -> None:
    """``router users add``: create, then apply any rule settings given."""
    uid = user_id(args.user_id)
    changes = _user_changes(args)
    zone = changes.pop("timezone", "UTC")

    async def action(store: ApiStore) -> None:
        user = await store.create_user({"id": uid, "timezone": zone, **changes}, actor=cli_actor())
        print_record(user, args.json, "added user " + describe_user(user))

    run_with_store(action)


def users_update(args: argparse.Namespace) -> None:
    """``router users update``."""
    uid = user_id(args.user_id)
    changes = _user_changes(args)
    if not changes:
        raise InvalidValue(
            "users update",
            uid,
            "needs at least one setting to change; see `router users update --help`",
        )

    async def action(store: ApiStore) -> None:
        user = await store.update_user(uid, changes, actor=cli_actor())
        print_record(user, args.json, "updated user " + describe_user(user))

    run_with_store(action)


def optout(args: argparse.Namespace) -> None:
    """``router optout add|remove|list``."""
    if args.optout_command == "list":

        async def show(store: PgStore) -> None:
            for transport, address in sorted(await store.list_opt_outs()):
                if args.json:
                    print(json.dumps({"transport": transport, "address": address}))
                else:
                    print(f"{transport}  {address}")

        run_with_store(show)
        return
    address = addresses.normalize(args.transport, args.address, args.region)

    async def change(store: PgStore) -> None:
        if args.optout_command == "add":
            await store.add_opt_out(args.transport, address, "cli", cli_actor())
            print(f"opted out: {args.transport} {address}")
        elif await store.remove_opt_out(args.transport, address, cli_actor()):
            print(f"opted in: {args.transport} {address}")
        else:
            print(f"not on the opt-out list: {args.transport} {address}")

    run_with_store(change)


def schedules_add_shift(args: argparse.Namespace) -> None:
    """``router schedules add-shift``."""
    start, end = instant("--start", args.start), instant("--end", args.end)
    if end <= start:
        raise InvalidValue("--end", args.end, f"must be after --start ({args.start})")
    schedule = user_id(args.schedule_id)
    uid = user_id(args.user)

    async def action(store: PgStore) -> None:
        shift = await store.add_shift(schedule, uid, start, end)
        print_record(shift, args.json, f"added shift {shift.id}: " + describe_shift(shift))

    run_with_store(action)


def schedules_list(args: argparse.Namespace) -> None:
    """``router schedules list``."""

    async def action(store: PgStore) -> None:
        for shift in await store.list_shifts(args.schedule_id):
            print(shift.model_dump_json() if args.json else describe_shift(shift))

    run_with_store(action)


def demo(args: argparse.Namespace) -> None:
    """``router demo``."""
    from router.dev.demo import main as demo_main

    demo_main(keep_running=args.keep_running)


# -- directory management --------------------------------------------------------------


def users_get(args: argparse.Namespace) -> None:
    """``router users get``."""

    async def action(store: PgStore) -> None:
        user = await store.get_user(args.user_id)
        print_record(user, args.json, describe_user(user))

    run_with_store(action)


def users_list(args: argparse.Namespace) -> None:
    """``router users list``: a table on a terminal, JSON lines under ``--json``."""

    async def action(store: PgStore) -> None:
        users = await store.list_users(after=args.after, search=args.search, limit=args.limit + 1)
        more, users = len(users) > args.limit, users[: args.limit]
        if args.json:
            for user in users:
                print(user.model_dump_json())
        else:
            rows = [
                [
                    u.id,
                    u.name or "",
                    u.timezone,
                    f"{u.quiet_hours_start:%H:%M}-{u.quiet_hours_end:%H:%M}"
                    if u.quiet_hours_start and u.quiet_hours_end
                    else "",
                    u.delivery_mode,
                    ",".join(u.channel_order),
                ]
                for u in users
            ]
            print(table.render(["ID", "NAME", "TIMEZONE", "QUIET HOURS", "MODE", "ORDER"], rows))
        if more:
            print(f"more: --after {users[-1].id}", file=sys.stderr)

    run_with_store(action)


def users_delete(args: argparse.Namespace) -> None:
    """``router users delete``: refused while the user has methods or shifts, unless --cascade."""

    async def action(store: ApiStore) -> None:
        methods, shifts = await store.delete_user(
            args.user_id, cascade=args.cascade, actor=cli_actor()
        )
        also = f" with {methods} contact method(s) and {shifts} shift(s)" if args.cascade else ""
        print(f"deleted user {args.user_id}{also}")

    run_with_store(action)


def held_list(args: argparse.Namespace) -> None:
    """``router held list``."""

    async def show(store: PgStore) -> None:
        for page in await store.list_held(user_id(args.user) if args.user else None):
            record = page.summary()
            if args.json:
                print(json.dumps(record))
            else:
                print(
                    f"{page.event.event_id}  {page.user_id}  {page.transport:<7} "
                    f"{page.contact_method_id}  {page.reason:<12} due {record['deliver_at']}"
                )

    run_with_store(show)


def held_flush(args: argparse.Namespace) -> None:
    """``router held flush --user U``: publish the user's held pages now."""
    from aiokafka.errors import KafkaError

    from router.held.scheduler import HeldDelivery
    from router.kafka.adapters import create_producer
    from router.kafka.publish import ProducerPublisher
    from router.routing.handler import utc_now

    uid = user_id(args.user)
    config = settings()

    async def flush(store: PgStore) -> None:
        producer = create_producer(config)
        try:
            await producer.start()
        except KafkaError as error:
            raise KafkaSetupError(
                f"Cannot reach Kafka at {config.kafka_bootstrap_servers} ({error}); the held "
                "pages stay held. Check ROUTER_KAFKA_BOOTSTRAP_SERVERS."
            ) from error
        try:
            delivery = HeldDelivery(
                store,
                ProducerPublisher(producer, config.kafka_max_request_bytes),
                config,
                utc_now,
                options=config.routing_options(),
            )
            outcome = await delivery.deliver_due(uid, force=True)
        finally:
            await producer.stop()
        expired = sum(1 for how in outcome.refused.values() if how == "expired")
        print(
            f"flushed {uid}: {len(outcome.jobs)} digest(s) carrying {len(outcome.sent)} "
            f"page(s); {len(outcome.refused) - expired} refused, {expired} expired"
        )

    run_with_store(flush)


def trail(args: argparse.Namespace) -> int:
    """``router trail EVENT_ID`` or ``router trail --user U --since 24h``."""
    from datetime import UTC, datetime

    from router.delivery.trail import story

    if (args.event_id is None) == (args.user is None):
        raise InvalidValue("trail", "", "needs an EVENT_ID, or --user U (not both)")
    found = 0

    async def show(store: PgStore) -> None:
        nonlocal found
        if args.user is not None:
            since = datetime.now(UTC) - duration("--since", args.since)
            pages = await store.pages_of_user(user_id(args.user), since)
            found = len(pages)
            for page in pages:
                if args.json:
                    print(json.dumps(page))
                else:
                    print(
                        f"{page['first_at']}  {page['event_id']}  {page['severity'] or '-'}  "
                        f"{page['title'] or '-'}  jobs {page['jobs']}, delivered "
                        f"{page['delivered']}, failed {page['failed']}"
                    )
            return
        event, jobs, rows = await store.trail(args.event_id)
        lines = story(event, jobs, rows)
        found = len(lines)
        for line in lines:
            print(line.as_json() if args.json else line.text())

    run_with_store(show)
    if not found:
        print(
            f"router: nothing on the trail for {args.event_id or args.user} (it may be older "
            "than ROUTER_TRAIL_RETENTION_SECONDS)",
            file=sys.stderr,
        )
        return 1
    return 0
