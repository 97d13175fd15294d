"""The ``router`` command line: argument parsing and exit codes. Commands live in
:mod:`router.commands`.

Exit status: 0 done; 1 refused (bad value, duplicate, unknown user...); 2 bad
usage or setting; 3 database or Kafka unavailable or not set up; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from router import commands
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="router",
        description="Route alert events from Kafka to email, SMS and webhook delivery jobs. "
        "Settings come from ROUTER_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "run", help="consume alerts and publish delivery jobs until stopped"
    ).set_defaults(func=commands.run)

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
    add.set_defaults(func=commands.contacts_add)

    update = contacts.add_parser("update", help="change a contact method's settings")
    update.add_argument("id")
    _method_settings(update)
    update.set_defaults(func=commands.contacts_update)

    mute = contacts.add_parser("mute", help="mute a method until cleared, or until --until")
    mute.add_argument("id")
    mute.add_argument("--until", metavar="ISO", help="unmute automatically at this time")
    mute.add_argument("--json", action="store_true")
    mute.set_defaults(func=commands.contacts_mute)

    unmute = contacts.add_parser("unmute", help="clear a mute (and any mute-until)")
    unmute.add_argument("id")
    unmute.add_argument("--json", action="store_true")
    unmute.set_defaults(func=commands.contacts_unmute)

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
    optout.add_parser("list", help="every address on the list").set_defaults(func=commands.optout)

    schedules = sub.add_parser("schedules", help="on-call schedules").add_subparsers(
        dest="schedules_command", required=True, metavar="ACTION"
    )
    shift = schedules.add_parser("add-shift", help="put a user on call for a time range")
    shift.add_argument("schedule_id")
    shift.add_argument("--user", required=True)
    shift.add_argument("--start", required=True, metavar="ISO", help="inclusive, with offset")
    shift.add_argument("--end", required=True, metavar="ISO", help="exclusive, with offset")
    shift.set_defaults(func=commands.schedules_add_shift)
    listing = schedules.add_parser("list", help="shifts, by schedule and start")
    listing.add_argument("schedule_id", nargs="?")
    listing.set_defaults(func=commands.schedules_list)
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
