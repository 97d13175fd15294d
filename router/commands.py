"""What each ``router`` subcommand does. ``router.cli`` parses arguments and calls these.

Values are checked here before anything is written, so a refused command
changes nothing; every refusal is a :class:`router.errors.RouterError` whose
message names the field, the value and what would be accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, time
from typing import Any, TextIO, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError

from router import addresses, bulk, table, verification
from router.directory import ContactMethod, User
from router.errors import ConfigError, InvalidValue, KafkaSetupError
from router.migrate import migrate
from router.settings import Settings
from router.store import MethodFilter, NewContactMethod, PgStore, Shift
from schemas import Kind, Transport

_USER_ID = re.compile(r"^[^\s\x00-\x1f]{1,256}$")
_QUIET = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
KINDS: tuple[str, ...] = get_args(Kind)
TRANSPORTS: tuple[str, ...] = ("sms", "email", "webhook")

# -- values ------------------------------------------------------------------------


def settings() -> Settings:
    """Settings from the environment; a bad value names its variable."""
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        name = "ROUTER_" + "_".join(str(p) for p in first["loc"]).upper()
        raise ConfigError(f"{name}: {first['msg']} (got {first.get('input')!r}).") from None


def user_id(value: str) -> str:
    """A user id: 1 to 256 characters, no spaces or control characters."""
    if not _USER_ID.match(value):
        raise InvalidValue("user id", value, "must be 1 to 256 characters with no spaces")
    return value


def timezone(value: str) -> str:
    """An IANA zone name."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidValue(
            "--timezone",
            value,
            "is not an IANA time zone; give one such as Europe/Berlin or America/New_York",
        ) from None
    return value


def quiet_hours(value: str) -> tuple[time, time]:
    """``HH:MM-HH:MM`` as (start, end); the window may cross midnight, but not be empty."""
    match = _QUIET.match(value.strip())
    expected = "must be HH:MM-HH:MM with different times, e.g. 22:00-07:00"
    if not match:
        raise InvalidValue("--quiet-hours", value, expected)
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    try:
        start, end = time(h1, m1), time(h2, m2)
    except ValueError:
        raise InvalidValue("--quiet-hours", value, expected) from None
    if start == end:
        raise InvalidValue("--quiet-hours", value, expected)
    return start, end


def channel_order(value: str) -> tuple[str, ...]:
    """A comma list of distinct transports, most preferred first."""
    order = tuple(t.strip() for t in value.split(",") if t.strip())
    if not order or any(t not in TRANSPORTS for t in order) or len(set(order)) != len(order):
        raise InvalidValue(
            "--channel-order",
            value,
            "must list sms, email and webhook at most once each, "
            "most preferred first, e.g. sms,email,webhook",
        )
    return order


def suppress_flags(value: str) -> dict[str, bool]:
    """``--suppress up,down`` as the full set of suppress flags (the kinds named, and no others)."""
    kinds = {k.strip() for k in value.split(",") if k.strip()}
    unknown = kinds - {*KINDS, "all"}
    if not kinds or unknown:
        raise InvalidValue(
            "--suppress", value, "must be a comma list of up, down, first, diagnostic or all"
        )
    return {f"suppress_{k}": (k in kinds) for k in (*KINDS, "all")}


def instant(flag: str, value: str) -> datetime:
    """An ISO 8601 time with a UTC offset (``Z`` accepted)."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidValue(
            flag,
            value,
            "must be an ISO 8601 time with offset, e.g. "
            "2026-11-24T09:00:00+01:00 or 2026-11-24T08:00:00Z",
        )
    return parsed


def pairs(values: Sequence[str] | None, sep: str, flag: str) -> dict[str, str]:
    """``KEY<sep>VALUE`` items as a dict."""
    out: dict[str, str] = {}
    for item in values or ():
        key, found, value = item.partition(sep)
        if not found or not key.strip():
            raise InvalidValue(flag, item, f"must be KEY{sep}VALUE")
        out[key.strip()] = value.strip()
    return out


# -- output ------------------------------------------------------------------------


def tags(values: Sequence[str] | None) -> list[str]:
    """Tags, trimmed, each once, in the order given."""
    out = list(dict.fromkeys(t.strip() for t in values or () if t.strip()))
    for tag in out:
        if len(tag) > 64 or "," in tag:
            raise InvalidValue("--tag", tag, "must be at most 64 characters without commas")
    return out


def _print(record: BaseModel, as_json: bool, line: str) -> None:
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
        f"(bypass {user.quiet_bypass})"
        if user.quiet_hours_start and user.quiet_hours_end
        else "no quiet hours"
    )
    return (
        f"{user.id}  {user.timezone}  {quiet}  mode {user.delivery_mode}  "
        f"order {','.join(user.channel_order)}"
    )


def _describe_shift(shift: Shift) -> str:
    return (
        f"{shift.schedule_id}  {shift.user_id}  {shift.starts_at.isoformat()} -> "
        f"{shift.ends_at.isoformat()}"
    )


# -- commands ----------------------------------------------------------------------


async def _with_store(action: Callable[[PgStore], Awaitable[None]]) -> None:
    store = await PgStore.connect(settings().database_url, min_size=1, max_size=2)
    try:
        await store.check_schema()
        await action(store)
    finally:
        await store.close()


def _run(action: Callable[[PgStore], Awaitable[None]]) -> None:
    asyncio.run(_with_store(action))


def run(args: argparse.Namespace) -> None:
    """``router run``."""
    from router.app import run as run_router

    asyncio.run(run_router(settings()))


def db_migrate(args: argparse.Namespace) -> None:
    """``router db migrate``."""
    applied = asyncio.run(migrate(settings().database_url))
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

    async def action(store: PgStore) -> None:
        user = await store.add_user(uid, changes.pop("name", None), zone)
        if changes:
            user = await store.update_user(uid, changes)
        _print(user, args.json, "added user " + describe_user(user))

    _run(action)


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

    async def action(store: PgStore) -> None:
        user = await store.update_user(uid, changes)
        _print(user, args.json, "updated user " + describe_user(user))

    _run(action)


def contacts_add(args: argparse.Namespace) -> None:
    """``router contacts add``."""
    transport: Transport = args.transport
    value = addresses.normalize(transport, args.value, args.region)
    if transport == "sms" and not args.allow_landline:
        addresses.check_sms_capable(value)
    webhook_flags = (args.webhook_method, args.header, args.query, args.body)
    if transport != "webhook" and any(webhook_flags):
        raise InvalidValue(
            "--webhook-method/--header/--query/--body",
            transport,
            "options apply only to --transport webhook",
        )
    new = NewContactMethod(
        user_id=user_id(args.user),
        transport=transport,
        value=value,
        label=args.label,
        is_primary=args.primary,
        verified=args.verified,
        webhook_method=args.webhook_method,
        webhook_headers=pairs(args.header, ":", "--header"),
        webhook_query=pairs(args.query, "=", "--query"),
        webhook_body=args.body,
        metadata=pairs(args.meta, "=", "--meta"),
        tags=tags(args.tag),
    )

    async def action(store: PgStore) -> None:
        method = await store.add_contact_method(new)
        _print(method, args.json, "added " + describe_method(method))

    _run(action)


def _method_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.label is not None:
        changes["label"] = args.label or None
    if args.primary:
        changes["is_primary"] = True
    if args.verified is not None:
        changes["verified"] = args.verified
    if args.disabled is not None:
        changes["disabled"] = args.disabled
    if args.suppress is not None:
        changes.update(suppress_flags(args.suppress))
    if args.no_suppress:
        changes.update({f"suppress_{k}": False for k in (*KINDS, "all")})
    if args.min_severity is not None:
        changes["min_severity"] = None if args.min_severity == "none" else args.min_severity
    return changes


def _extras_changes(args: argparse.Namespace, method: ContactMethod) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.meta:
        metadata = dict(method.metadata)
        for key, value in pairs(args.meta, "=", "--meta").items():
            if value:
                metadata[key] = value
            else:
                metadata.pop(key, None)  # KEY= removes the key
        changes["metadata"] = metadata
    if args.tag or args.untag:
        removed = set(tags(args.untag))
        changes["tags"] = [t for t in tags([*method.tags, *(args.tag or [])]) if t not in removed]
    return changes


def _update_method(method_id: str, changes: dict[str, Any], as_json: bool, verb: str) -> None:
    async def action(store: PgStore) -> None:
        method = await store.update_contact_method(method_id, changes)
        _print(method, as_json, f"{verb} " + describe_method(method))

    _run(action)


def contacts_update(args: argparse.Namespace) -> None:
    """``router contacts update``."""
    changes = _method_changes(args)
    if not changes and not (args.meta or args.tag or args.untag):
        raise InvalidValue(
            "contacts update",
            args.id,
            "needs at least one setting to change; see `router contacts update --help`",
        )

    async def action(store: PgStore) -> None:
        current = await store.get_contact_method(args.id)
        method = await store.update_contact_method(
            args.id, {**changes, **_extras_changes(args, current)}
        )
        _print(method, args.json, "updated " + describe_method(method))

    _run(action)


def contacts_mute(args: argparse.Namespace) -> None:
    """``router contacts mute``: until cleared, or until ``--until``."""
    if args.until is None:
        changes: dict[str, Any] = {"muted": True, "mute_until": None}
    else:
        until = instant("--until", args.until)
        if until <= datetime.now(until.tzinfo):
            raise InvalidValue(
                "--until",
                args.until,
                "is not in the future; a mute that already ended would change nothing",
            )
        changes = {"muted": False, "mute_until": until}
    _update_method(args.id, changes, args.json, "muted")


def contacts_unmute(args: argparse.Namespace) -> None:
    """``router contacts unmute``: clears both the flag and any mute-until."""
    _update_method(args.id, {"muted": False, "mute_until": None}, args.json, "unmuted")


def optout(args: argparse.Namespace) -> None:
    """``router optout add|remove|list``."""
    if args.optout_command == "list":

        async def show(store: PgStore) -> None:
            for transport, address in sorted(await store.list_opt_outs()):
                print(f"{transport}  {address}")

        _run(show)
        return
    address = addresses.normalize(args.transport, args.address, args.region)

    async def change(store: PgStore) -> None:
        if args.optout_command == "add":
            await store.add_opt_out(args.transport, address, "cli")
            print(f"opted out: {args.transport} {address}")
        elif await store.remove_opt_out(args.transport, address):
            print(f"opted in: {args.transport} {address}")
        else:
            print(f"not on the opt-out list: {args.transport} {address}")

    _run(change)


def schedules_add_shift(args: argparse.Namespace) -> None:
    """``router schedules add-shift``."""
    start, end = instant("--start", args.start), instant("--end", args.end)
    if end <= start:
        raise InvalidValue("--end", args.end, f"must be after --start ({args.start})")
    schedule = user_id(args.schedule_id)
    uid = user_id(args.user)

    async def action(store: PgStore) -> None:
        shift = await store.add_shift(schedule, uid, start, end)
        print(f"added shift {shift.id}: " + _describe_shift(shift))

    _run(action)


def schedules_list(args: argparse.Namespace) -> None:
    """``router schedules list``."""

    async def action(store: PgStore) -> None:
        for shift in await store.list_shifts(args.schedule_id):
            print(_describe_shift(shift))

    _run(action)


def demo(args: argparse.Namespace) -> None:
    """``router demo``."""
    from router.demo import main as demo_main

    demo_main(keep_running=args.keep_running)


# -- directory management --------------------------------------------------------------


def users_get(args: argparse.Namespace) -> None:
    """``router users get``."""

    async def action(store: PgStore) -> None:
        user = await store.get_user(args.user_id)
        _print(user, args.json, describe_user(user))

    _run(action)


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

    _run(action)


def users_delete(args: argparse.Namespace) -> None:
    """``router users delete``: refused while the user has methods or shifts, unless --cascade."""

    async def action(store: PgStore) -> None:
        methods, shifts = await store.delete_user(args.user_id, cascade=args.cascade)
        also = f" with {methods} contact method(s) and {shifts} shift(s)" if args.cascade else ""
        print(f"deleted user {args.user_id}{also}")

    _run(action)


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


def encode_cursor(method: ContactMethod) -> str:
    """An opaque cursor for the rows after ``method``."""
    key = json.dumps([method.user_id, method.transport, method.value]).encode()
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str, str]:
    """The key a cursor stands for; :class:`InvalidValue` for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        user, transport, value = json.loads(base64.urlsafe_b64decode(padded))
        return str(user), str(transport), str(value)
    except (ValueError, TypeError):
        raise InvalidValue(
            "--cursor", cursor, "is not a cursor this command printed; start again without it"
        ) from None


def _flags(method: ContactMethod) -> str:
    flags = [
        "primary" if method.is_primary else "",
        "verified" if method.verified else "",
        "disabled" if method.disabled else "",
        "muted" if method.muted or method.mute_until else "",
    ]
    return ",".join(f for f in flags if f)


def contacts_list(args: argparse.Namespace) -> None:
    """``router contacts list``: a table on a terminal, JSON lines under ``--json``."""
    if args.cursor and args.page:
        raise InvalidValue("--page", args.page, "cannot be combined with --cursor; use one")
    after = decode_cursor(args.cursor) if args.cursor else None
    offset = (args.page - 1) * args.limit if args.page else 0

    async def action(store: PgStore) -> None:
        methods = await store.list_contact_methods(
            method_filter(args), after=after, limit=args.limit + 1, offset=offset
        )
        more, methods = len(methods) > args.limit, methods[: args.limit]
        if args.json:
            for method in methods:
                print(method.model_dump_json())
        else:
            rows = [
                [m.id, m.user_id, m.transport, m.value, m.label or "", _flags(m), ",".join(m.tags)]
                for m in methods
            ]
            print(
                table.render(["ID", "USER", "TRANSPORT", "VALUE", "LABEL", "FLAGS", "TAGS"], rows)
            )
        if more:
            page = f" or --page {args.page + 1}" if args.page else ""
            print(f"more: --cursor {encode_cursor(methods[-1])}{page}", file=sys.stderr)

    _run(action)


def contacts_count(args: argparse.Namespace) -> None:
    """``router contacts count``."""

    async def action(store: PgStore) -> None:
        count = await store.count_contact_methods(method_filter(args))
        print(json.dumps({"count": count}) if args.json else count)

    _run(action)


def contacts_get(args: argparse.Namespace) -> None:
    """``router contacts get``: the record, and for phones every format with region and type."""

    async def action(store: PgStore) -> None:
        method = await store.get_contact_method(args.id)
        phone = addresses.phone_details(method.value) if method.transport == "sms" else None
        if args.json:
            record = method.model_dump(mode="json")
            if phone:
                record["phone"] = phone
            print(json.dumps(record))
            return
        print(describe_method(method))
        meta = ", ".join(f"{k}={v}" for k, v in sorted(method.metadata.items()))
        extra = {"metadata": meta, "tags": ",".join(method.tags)}
        for key, value in {**(phone or {}), **extra}.items():
            if value:
                print(f"  {key + ':':<14} {value}")

    _run(action)


def contacts_primary(args: argparse.Namespace) -> None:
    """``router contacts primary USER TRANSPORT``."""

    async def action(store: PgStore) -> None:
        method = await store.primary_contact_method(args.user_id, args.transport)
        _print(method, args.json, describe_method(method))

    _run(action)


def contacts_delete(args: argparse.Namespace) -> None:
    """``router contacts delete ID`` or ``--user U --all`` (one transaction)."""
    if bool(args.id) == bool(args.user and args.all) or (args.user and not args.all):
        raise InvalidValue(
            "contacts delete", args.id or args.user or "", "takes a method ID, or --user USER --all"
        )

    async def action(store: PgStore) -> None:
        if args.id:
            await store.delete_contact_method(args.id)
            print(f"deleted contact method {args.id}")
        else:
            count = await store.delete_user_methods(args.user)
            print(f"deleted {count} contact method(s) of user {args.user}")

    _run(action)


async def publish_one(config: Settings, topic: str, job: BaseModel, key: str) -> None:
    """Publish one job and wait for the broker's acknowledgement."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(
        bootstrap_servers=config.kafka_bootstrap_servers,
        client_id=config.kafka_client_id,
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


def contacts_verify(args: argparse.Namespace) -> None:
    """``router contacts verify``: send a short-lived code to the method itself."""
    config = settings()

    async def action(store: PgStore) -> None:
        code = verification.new_code()
        method, expires_at = await store.start_verification(
            args.id, verification.hash_code(args.id, code), config.verification_code_ttl_seconds
        )
        job = verification.verification_job(method, code, expires_at, datetime.now(UTC))
        await publish_one(config, config.delivery_topic(method.transport), job, method.id)
        where = addresses.mask(method.transport, method.value)
        print(
            f"sent a verification code to {method.transport} {where}; it expires at "
            f"{expires_at.isoformat()}. Confirm with `router contacts confirm {method.id} CODE`."
        )

    _run(action)


def contacts_confirm(args: argparse.Namespace) -> None:
    """``router contacts confirm``: mark verified when the code is right and fresh."""
    config = settings()

    async def action(store: PgStore) -> None:
        method = await store.confirm_verification(
            args.id,
            lambda stored: verification.code_matches(args.id, args.code, stored),
            config.verification_max_attempts,
        )
        _print(method, args.json, "verified " + describe_method(method))

    _run(action)


class Progress:
    """A one-line progress bar on a terminal's stderr; silent elsewhere."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.shown = label, max(total, 1), -1
        self.active = sys.stderr.isatty()

    def update(self, done: int) -> None:
        """Show ``done`` of ``total``, redrawing only when the percentage changes."""
        percent = min(100, done * 100 // self.total)
        if self.active and percent != self.shown:
            self.shown = percent
            bar = "#" * (percent // 4)
            print(f"\r{self.label} [{bar:<25}] {percent:3d}%", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the bar's line."""
        if self.active:
            print(file=sys.stderr)


def _drop_unknown_users(result: bulk.ImportPlan, existing: set[str]) -> None:
    missing = result.users - existing
    if not missing:
        return
    keep_lines, keep_rows = [], []
    for line, row in zip(result.lines, result.rows, strict=True):
        if row[0] in missing:
            result.errors.append(
                bulk.RowError(
                    line, f"user {row[0]!r} does not exist (add it, or pass --create-users)"
                )
            )
        else:
            keep_lines.append(line)
            keep_rows.append(row)
    result.lines, result.rows = keep_lines, keep_rows


def contacts_import(args: argparse.Namespace) -> None:
    """``router contacts import FILE``: validate every row, then write all (or the good ones)."""
    try:
        with open(args.file, newline="", encoding="utf-8") as handle:
            lines = handle.read().splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidValue("FILE", args.file, f"cannot be read as UTF-8 text ({error})") from None
    fmt = args.format or bulk.detect_format(args.file, lines[0] if lines else "")
    progress = Progress("validating", len(lines))
    records = []
    for record in bulk.read(lines, fmt):
        records.append(record)
        if len(records) % 1000 == 0:
            progress.update(record[0])
    progress.update(len(lines))
    progress.close()
    result = bulk.plan(records, allow_landline=args.allow_landline)

    async def action(store: PgStore) -> None:
        if not args.create_users:
            _drop_unknown_users(result, await store.users_that_exist(result.users))
        result.errors.sort(key=lambda e: e.line)
        for error in result.errors:
            print(f"{args.file}:{error.line}: {error.message}", file=sys.stderr)
        if result.errors and not args.skip_invalid:
            raise InvalidValue(
                "FILE",
                args.file,
                f"has {len(result.errors)} invalid row(s), listed above; nothing was written "
                "(fix them, or pass --skip-invalid to write the valid rows)",
            )
        inserted, updated = await store.import_contact_methods(
            result.rows, create_users=args.create_users
        )
        unchanged = len(result.rows) - inserted - updated
        print(
            f"imported {len(result.rows)} row(s): {inserted} added, {updated} updated, "
            f"{unchanged} unchanged, {len(result.errors)} skipped as invalid"
        )

    _run(action)


def contacts_export(args: argparse.Namespace) -> None:
    """``router contacts export``: every method (or the filtered ones), CSV or JSON lines."""
    fmt: bulk.Format = args.format

    async def write(store: PgStore, out: TextIO) -> None:
        out.write(bulk.export_header(fmt))
        after = None
        while page := await store.list_contact_methods(
            method_filter(args), after=after, limit=5000
        ):
            out.write(bulk.export_rows(page, fmt))
            last = page[-1]
            after = (last.user_id, last.transport, last.value)

    if not args.output:
        _run(lambda store: write(store, sys.stdout))
        return
    with open(args.output, "w", newline="", encoding="utf-8") as out:
        _run(lambda store: write(store, out))
