"""What each ``router`` subcommand does. ``router.cli`` parses arguments and calls these.

Values are checked here before anything is written, so a refused command
changes nothing; every refusal is a :class:`router.errors.RouterError` whose
message names the field, the value and what would be accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, time
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError

from router import addresses
from router.directory import ContactMethod, User
from router.errors import ConfigError, InvalidValue
from router.migrate import migrate
from router.settings import Settings
from router.store import NewContactMethod, PgStore, Shift
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


def _update_method(method_id: str, changes: dict[str, Any], as_json: bool, verb: str) -> None:
    async def action(store: PgStore) -> None:
        method = await store.update_contact_method(method_id, changes)
        _print(method, as_json, f"{verb} " + describe_method(method))

    _run(action)


def contacts_update(args: argparse.Namespace) -> None:
    """``router contacts update``."""
    changes = _method_changes(args)
    if not changes:
        raise InvalidValue(
            "contacts update",
            args.id,
            "needs at least one setting to change; see `router contacts update --help`",
        )
    _update_method(args.id, changes, args.json, "updated")


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
