"""The ``router`` command: run the worker, migrate the database, manage the directory.

Every refusal prints one line to stderr that says what is wrong and what would
be accepted, and exits non-zero; nothing is written when a command is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from router import addresses
from router.directory import ContactMethod
from router.errors import ConfigError, InvalidValue, RouterError
from router.migrate import migrate
from router.settings import Settings
from router.store import NewContactMethod, PgStore

_USER_ID = re.compile(r"^[^\s\x00-\x1f]{1,256}$")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        name = "ROUTER_" + "_".join(str(p) for p in first["loc"]).upper()
        raise ConfigError(f"{name}: {first['msg']} (got {first.get('input')!r}).") from None


def _user_id(value: str) -> str:
    if not _USER_ID.match(value):
        raise InvalidValue("user id", value, "must be 1 to 256 characters with no spaces")
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidValue(
            "--timezone",
            value,
            "is not an IANA time zone; give one such as Europe/Berlin or America/New_York",
        ) from None
    return value


def _pairs(values: Sequence[str] | None, sep: str, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or ():
        key, found, value = item.partition(sep)
        if not found or not key.strip():
            raise InvalidValue(flag, item, f"must be KEY{sep}VALUE")
        out[key.strip()] = value.strip()
    return out


def _describe(method: ContactMethod) -> str:
    flags = [
        "primary" if method.is_primary else None,
        "verified" if method.verified else "unverified",
        "disabled" if method.disabled else None,
    ]
    label = f" [{method.label}]" if method.label else ""
    return (
        f"{method.id}  {method.user_id}  {method.transport:<7} {method.value}{label}  "
        f"({', '.join(f for f in flags if f)})"
    )


async def _with_store(settings: Settings, action: Callable[[PgStore], Awaitable[None]]) -> None:
    store = await PgStore.connect(settings.database_url, min_size=1, max_size=2)
    try:
        await store.check_schema()
        await action(store)
    finally:
        await store.close()


def cmd_run(args: argparse.Namespace) -> None:
    from router.app import run

    asyncio.run(run(_settings()))


def cmd_db_migrate(args: argparse.Namespace) -> None:
    applied = asyncio.run(migrate(_settings().database_url))
    print("applied: " + ", ".join(applied) if applied else "database is up to date")


def cmd_users_add(args: argparse.Namespace) -> None:
    user_id = _user_id(args.user_id)
    timezone = _timezone(args.timezone)

    async def action(store: PgStore) -> None:
        user = await store.add_user(user_id, args.name, timezone)
        print(user.model_dump_json() if args.json else f"added user {user.id} ({user.timezone})")

    asyncio.run(_with_store(_settings(), action))


def cmd_contacts_add(args: argparse.Namespace) -> None:
    transport = args.transport
    value = addresses.normalize(transport, args.value, args.region)
    webhook_flags = (args.webhook_method, args.header, args.query, args.body)
    if transport != "webhook" and any(webhook_flags):
        raise InvalidValue(
            "--webhook-method/--header/--query/--body",
            transport,
            "options apply only to --transport webhook",
        )
    new = NewContactMethod(
        user_id=_user_id(args.user),
        transport=transport,
        value=value,
        label=args.label,
        is_primary=args.primary,
        verified=args.verified,
        webhook_method=args.webhook_method,
        webhook_headers=_pairs(args.header, ":", "--header"),
        webhook_query=_pairs(args.query, "=", "--query"),
        webhook_body=args.body,
    )

    async def action(store: PgStore) -> None:
        method = await store.add_contact_method(new)
        print(method.model_dump_json() if args.json else "added " + _describe(method))

    asyncio.run(_with_store(_settings(), action))


def cmd_demo(args: argparse.Namespace) -> None:
    from router.demo import main as demo_main

    demo_main(keep_running=args.keep_running)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="router",
        description="Route alert events from Kafka to email, SMS and webhook delivery jobs. "
        "Settings come from ROUTER_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="consume alerts and publish delivery jobs until stopped")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="run everything on embedded Kafka and PostgreSQL")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the worker running after the sample alerts (Ctrl-C stops)",
    )
    demo.set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    db.add_parser(
        "migrate", help="apply pending migrations (safe to repeat, and from several pods at once)"
    ).set_defaults(func=cmd_db_migrate)

    users = sub.add_parser("users", help="manage users").add_subparsers(
        dest="users_command", required=True, metavar="ACTION"
    )
    users_add = users.add_parser("add", help="create a user")
    users_add.add_argument("user_id")
    users_add.add_argument("--name")
    users_add.add_argument("--timezone", default="UTC", help="IANA zone (default UTC)")
    users_add.add_argument("--json", action="store_true", help="print the user as JSON")
    users_add.set_defaults(func=cmd_users_add)

    contacts = sub.add_parser("contacts", help="manage contact methods").add_subparsers(
        dest="contacts_command", required=True, metavar="ACTION"
    )
    add = contacts.add_parser("add", help="create a contact method")
    add.add_argument("--user", required=True, help="the owning user's id")
    add.add_argument("--transport", required=True, choices=["email", "sms", "webhook"])
    add.add_argument("--value", required=True, help="email address, phone number or URL")
    add.add_argument("--region", help="ISO country code for national phone formats, e.g. US")
    add.add_argument("--label")
    add.add_argument(
        "--primary", action="store_true", help="make it the user's primary for this transport"
    )
    add.add_argument("--verified", action="store_true")
    add.add_argument(
        "--webhook-method",
        choices=["GET", "POST", "PUT", "HEAD", "DELETE"],
        help="HTTP method (default POST)",
    )
    add.add_argument(
        "--header",
        action="append",
        metavar="NAME:VALUE",
        help="HTTP header for the webhook (repeatable)",
    )
    add.add_argument(
        "--query",
        action="append",
        metavar="KEY=VALUE",
        help="query-string value appended to the URL (repeatable)",
    )
    add.add_argument("--body", help="HTTP body template; {{title}}, {{severity}}, ... are filled")
    add.add_argument("--json", action="store_true", help="print the created method as JSON")
    add.set_defaults(func=cmd_contacts_add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``router`` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except RouterError as error:
        print(f"router: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
