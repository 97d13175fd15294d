"""The ``router`` command line: argument parsing and exit codes. Commands live in
:mod:`router.cli.commands`.

Exit status: 0 done; 1 refused (bad value, duplicate, unknown user...); 2 bad
usage or setting; 3 database or Kafka unavailable or not set up; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import router.cli.page_commands as page_commands
from router.cli import api_commands, bulk_commands, commands, contact_commands, schedule_commands
from router.errors import RouterError

SEVERITIES = ["critical", "error", "warning", "info"]


def _user_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name")
    parser.add_argument("--timezone", help="IANA zone, e.g. Europe/Berlin (default UTC)")
    quiet = parser.add_mutually_exclusive_group()
    quiet.add_argument(
        "--quiet-hours",
        metavar="HH:MM-HH:MM",
        help="daily local window with no non-urgent alerts; may cross midnight",
    )
    quiet.add_argument("--no-quiet-hours", action="store_true", help="remove quiet hours")
    parser.add_argument(
        "--quiet-bypass",
        choices=SEVERITIES,
        help="severities at or above this ignore quiet hours (default critical)",
    )
    parser.add_argument(
        "--quiet-action",
        choices=["defer", "drop"],
        help="pages in quiet hours: held and sent as one digest when the window ends "
        "(defer, the default) or skipped (drop)",
    )
    parser.add_argument(
        "--channel-order", metavar="LIST", help="transports by preference, e.g. sms,email,webhook"
    )
    parser.add_argument(
        "--delivery-mode",
        choices=["all", "preferred"],
        help="all eligible methods, or only the preferred one (critical: all)",
    )
    parser.add_argument("--json", action="store_true", help="print the user as JSON")


def _method_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", help="a label ('' removes it)")
    parser.add_argument(
        "--primary",
        action="store_true",
        help="make it the primary of its transport (clears the old one)",
    )
    verified = parser.add_mutually_exclusive_group()
    verified.add_argument("--verified", dest="verified", action="store_true", default=None)
    verified.add_argument("--unverified", dest="verified", action="store_false")
    disabled = parser.add_mutually_exclusive_group()
    disabled.add_argument("--disabled", dest="disabled", action="store_true", default=None)
    disabled.add_argument("--enabled", dest="disabled", action="store_false")
    suppress = parser.add_mutually_exclusive_group()
    suppress.add_argument(
        "--suppress",
        metavar="KINDS",
        help="suppress exactly these kinds: up,down,first,diagnostic or all",
    )
    suppress.add_argument("--no-suppress", action="store_true", help="suppress nothing")
    parser.add_argument(
        "--min-severity",
        choices=[*SEVERITIES, "none"],
        help="only events at or above this severity ('none' removes it)",
    )
    parser.add_argument("--json", action="store_true", help="print the method as JSON")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _method_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", help="only this user's methods")
    parser.add_argument("--transport", choices=["email", "sms", "webhook"])
    verified = parser.add_mutually_exclusive_group()
    verified.add_argument("--verified", dest="verified", action="store_true", default=None)
    verified.add_argument("--unverified", dest="verified", action="store_false")
    parser.add_argument("--search", metavar="TEXT", help="text in the value, label or user id")
    parser.add_argument(
        "--meta",
        action="append",
        metavar="KEY=VALUE",
        help="only methods with this metadata (repeatable)",
    )
    parser.add_argument("--tag", help="only methods with this tag")


def _webhook_options(parser: argparse.ArgumentParser) -> None:
    """--webhook-method, --header, --query, --body (on update they replace the stored ones)."""
    methods = ["GET", "POST", "PUT", "HEAD", "DELETE"]
    parser.add_argument("--webhook-method", choices=methods, help="HTTP method (default POST)")
    parser.add_argument(
        "--header", action="append", metavar="NAME:VALUE", help="webhook header (repeatable)"
    )
    parser.add_argument(
        "--query", action="append", metavar="KEY=VALUE", help="URL query value (repeatable)"
    )
    parser.add_argument("--body", help="HTTP body template; {{title}}, {{severity}}... are filled")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="router",
        description="Route alert events from Kafka to email, SMS and webhook delivery jobs. "
        "Settings come from ROUTER_* environment variables (see docs/settings.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "run", help="consume alerts and publish delivery jobs until stopped"
    ).set_defaults(func=commands.run)

    sub.add_parser(
        "ingest",
        help="serve HTTP endpoints for Alertmanager, Grafana and CloudEvents; publish to alerts",
    ).set_defaults(func=commands.ingest)

    sub.add_parser(
        "api", help="serve the directory over HTTP (users, contact methods, opt-outs, audit)"
    ).set_defaults(func=api_commands.api)

    audit = sub.add_parser("audit", help="who changed what in the directory, newest first")
    audit.add_argument("--entity", choices=["user", "contact_method", "opt_out"])
    audit.add_argument("--id", help="only changes of this user, method id or address")
    audit.add_argument("--since", default="24h", help="how far back (30m, 24h, 7d)")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(func=api_commands.audit)

    status = sub.add_parser(
        "status",
        help="do the broker and database answer, is the schema current, the groups and their lag",
    )
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(func=commands.status)

    demo = sub.add_parser("demo", help="run everything on embedded Kafka and PostgreSQL")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the worker running after the sample alerts (Ctrl-C stops)",
    )
    demo.set_defaults(func=commands.demo)

    db = sub.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    db.add_parser(
        "migrate", help="apply pending migrations (safe to repeat, and from several pods at once)"
    ).set_defaults(func=commands.db_migrate)

    users = sub.add_parser("users", help="manage users").add_subparsers(
        dest="users_command", required=True, metavar="ACTION"
    )
    for action, func, text in (
        ("add", commands.users_add, "create a user"),
        ("update", commands.users_update, "change a user's settings"),
    ):
        p = users.add_parser(action, help=text)
        p.add_argument("user_id")
        _user_settings(p)
        p.set_defaults(func=func)

    get = users.add_parser("get", help="show a user")
    get.add_argument("user_id")
    get.add_argument("--json", action="store_true")
    get.set_defaults(func=commands.users_get)
    listing = users.add_parser("list", help="users by id (a table, or JSON lines)")
    listing.add_argument("--search", help="text in the id or name")
    listing.add_argument("--limit", type=_positive, default=100)
    listing.add_argument("--after", metavar="USER_ID", help="start after this id (next page)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=commands.users_list)
    delete = users.add_parser("delete", help="delete a user")
    delete.add_argument("user_id")
    delete.add_argument(
        "--cascade", action="store_true", help="also delete the user's contact methods and shifts"
    )
    delete.set_defaults(func=commands.users_delete)

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
        "--allow-landline", action="store_true", help="accept a fixed-line number for sms"
    )
    add.add_argument("--meta", action="append", metavar="KEY=VALUE", help="metadata (repeatable)")
    add.add_argument("--tag", action="append", help="a tag (repeatable)")
    page_commands.notify_after_option(add)
    _webhook_options(add)
    add.add_argument("--json", action="store_true", help="print the created method as JSON")
    add.set_defaults(func=contact_commands.contacts_add)

    update = contacts.add_parser("update", help="change a contact method's settings")
    update.add_argument("id")
    _method_settings(update)
    update.add_argument(
        "--meta",
        action="append",
        metavar="KEY=VALUE",
        help="set metadata (KEY= removes it; repeatable)",
    )
    update.add_argument("--tag", action="append", help="add a tag (repeatable)")
    update.add_argument("--untag", action="append", help="remove a tag (repeatable)")
    update.add_argument("--value", help="a new address, checked like a new one; resets verified")
    update.add_argument("--region", help="ISO country code for a national phone format")
    update.add_argument("--allow-landline", action="store_true", help="accept a fixed line for sms")
    page_commands.notify_after_option(update)
    _webhook_options(update)
    update.set_defaults(func=contact_commands.contacts_update)

    get = contacts.add_parser("get", help="show a method (phones in every format)")
    get.add_argument("id")
    get.add_argument("--json", action="store_true")
    get.set_defaults(func=contact_commands.contacts_get)

    for action, func, text in (
        ("list", contact_commands.contacts_list, "methods (a table, or JSON lines)"),
        ("count", contact_commands.contacts_count, "how many methods match"),
        ("export", bulk_commands.contacts_export, "write methods as CSV or JSON lines"),
    ):
        p = contacts.add_parser(action, help=text)
        _method_filters(p)
        if action == "list":
            p.add_argument("--limit", type=_positive, default=50)
            p.add_argument("--cursor", help="continue after the last page (printed on stderr)")
            p.add_argument("--page", type=_positive, help="page number (with --limit)")
        if action == "export":
            p.add_argument("--format", choices=["csv", "jsonl"], default="csv")
            p.add_argument("--output", metavar="FILE", help="write here instead of stdout")
        else:
            p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)

    primary = contacts.add_parser("primary", help="the user's primary method of a transport")
    primary.add_argument("user_id")
    primary.add_argument("transport", choices=["email", "sms", "webhook"])
    primary.add_argument("--json", action="store_true")
    primary.set_defaults(func=contact_commands.contacts_primary)

    delete = contacts.add_parser("delete", help="delete a method, or all of a user's")
    delete.add_argument("id", nargs="?")
    delete.add_argument("--user", help="with --all: the user whose methods to delete")
    delete.add_argument("--all", action="store_true", help="every method of --user, at once")
    delete.set_defaults(func=contact_commands.contacts_delete)

    verify = contacts.add_parser("verify", help="send a verification code to the method")
    verify.add_argument("id")
    verify.set_defaults(func=contact_commands.contacts_verify)
    confirm = contacts.add_parser("confirm", help="confirm a method with the code it received")
    confirm.add_argument("id")
    confirm.add_argument("code")
    confirm.add_argument("--json", action="store_true")
    confirm.set_defaults(func=contact_commands.contacts_confirm)

    imp = contacts.add_parser("import", help="upsert methods from CSV or JSON lines")
    imp.add_argument("file")
    imp.add_argument(
        "--format",
        choices=["csv", "jsonl"],
        help="default: from the file name or its first character",
    )
    mode = imp.add_mutually_exclusive_group()
    mode.add_argument(
        "--atomic",
        dest="skip_invalid",
        action="store_false",
        help="write nothing if any row is invalid (the default)",
    )
    mode.add_argument(
        "--skip-invalid",
        dest="skip_invalid",
        action="store_true",
        help="write the valid rows and list the invalid ones",
    )
    imp.add_argument(
        "--create-users",
        action="store_true",
        help="create users the file names that do not exist yet",
    )
    imp.add_argument(
        "--allow-landline", action="store_true", help="accept fixed-line numbers for sms"
    )
    imp.set_defaults(func=bulk_commands.contacts_import, skip_invalid=False)

    mute = contacts.add_parser("mute", help="mute a method until cleared, or until --until")
    mute.add_argument("id")
    mute.add_argument("--until", metavar="ISO", help="unmute automatically at this time")
    mute.add_argument("--json", action="store_true")
    mute.set_defaults(func=contact_commands.contacts_mute)

    unmute = contacts.add_parser("unmute", help="clear a mute (and any mute-until)")
    unmute.add_argument("id")
    unmute.add_argument("--json", action="store_true")
    unmute.set_defaults(func=contact_commands.contacts_unmute)

    optout = sub.add_parser(
        "optout", help="the opt-out list (SMS numbers, email addresses)"
    ).add_subparsers(dest="optout_command", required=True, metavar="ACTION")
    for action, text in (
        ("add", "stop all delivery to an address, for every user"),
        ("remove", "allow delivery to an address again"),
    ):
        p = optout.add_parser(action, help=text)
        p.add_argument("--transport", required=True, choices=["sms", "email"])
        p.add_argument("--address", required=True)
        p.add_argument("--region", help="ISO country code for a national phone format")
        p.set_defaults(func=commands.optout)
    optout_list = optout.add_parser("list", help="every address on the list")
    optout_list.add_argument("--json", action="store_true", help="one JSON object per line")
    optout_list.set_defaults(func=commands.optout)

    trail = sub.add_parser(
        "trail",
        help="the story of one page (decisions, jobs, statuses, failovers), or a user's pages",
    )
    trail.add_argument("event_id", nargs="?", help="the page's event_id")
    trail.add_argument("--user", help="list this user's pages instead")
    trail.add_argument("--since", default="24h", help="with --user: how far back (24h, 30m, 7d)")
    trail.add_argument("--json", action="store_true", help="one JSON object per line")
    trail.set_defaults(func=commands.trail)

    held = sub.add_parser(
        "held", help="pages held by quiet hours or rate limits, waiting to go out as digests"
    ).add_subparsers(dest="held_command", required=True, metavar="ACTION")
    held_list = held.add_parser("list", help="one line per held page, by user and due time")
    held_list.add_argument("--user", help="only this user's pages")
    held_list.add_argument("--json", action="store_true", help="one JSON object per line")
    held_list.set_defaults(func=commands.held_list)
    flush = held.add_parser(
        "flush",
        help="send a user's held pages now, one digest per method, whatever the window or limit",
    )
    flush.add_argument("--user", required=True)
    flush.set_defaults(func=commands.held_flush)

    schedules = sub.add_parser("schedules", help="on-call schedules").add_subparsers(
        dest="schedules_command", required=True, metavar="ACTION"
    )
    shift = schedules.add_parser("add-shift", help="put a user on call for a time range")
    shift.add_argument("schedule_id")
    shift.add_argument("--user", required=True)
    shift.add_argument("--start", required=True, metavar="ISO", help="inclusive, with offset")
    shift.add_argument("--end", required=True, metavar="ISO", help="exclusive, with offset")
    shift.add_argument("--json", action="store_true", help="print the shift as JSON")
    shift.set_defaults(func=commands.schedules_add_shift)
    listing = schedules.add_parser("list", help="shifts, by schedule and start")
    listing.add_argument("schedule_id", nargs="?")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=commands.schedules_list)
    schedule_commands.register(schedules)
    page_commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``router`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except RouterError as error:
        print(f"router: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
