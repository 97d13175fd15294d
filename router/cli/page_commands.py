"""``router policies ...``, ``router ack`` and ``router pages ...``: escalation
policies, acknowledging from the command line, and the pages and their state."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime

from router.cli.common import cli_actor, publish_one, run_with_store
from router.cli.table import render as table
from router.cli.values import settings, user_id
from router.db.api_bulk import BulkApiStore
from router.errors import InvalidValue, NotFound
from router.pages.escalation import Page
from router.pages.policy import PolicyStep, describe_policy, parse_delay
from schemas import PageAck


def _delay(flag: str, text: str) -> int:
    try:
        return parse_delay(text)
    except ValueError as error:
        raise InvalidValue(flag, text, "a duration such as 30s, 5m or 1h") from error


def policies_add(args: argparse.Namespace) -> None:
    """``router policies add POLICY_ID --name NAME [--repeat N]``."""
    policy_id = user_id(args.policy_id)

    async def action(store: BulkApiStore) -> None:
        policy = await store.add_policy(policy_id, args.name or policy_id, args.repeat)
        print(policy.model_dump_json() if args.json else f"added policy {policy.id}")

    run_with_store(action)


def policies_add_step(args: argparse.Namespace) -> None:
    """``router policies add-step POLICY_ID --delay D [--user U]... [--schedule S]...``."""
    if not args.user and not args.schedule:
        raise InvalidValue("add-step", args.policy_id, "needs at least one --user or --schedule")
    step = PolicyStep(
        delay_seconds=_delay("--delay", args.delay),
        user_ids=tuple(user_id(u) for u in args.user or ()),
        schedule_ids=tuple(args.schedule or ()),
    )

    async def action(store: BulkApiStore) -> None:
        position = await store.add_policy_step(args.policy_id, step)
        print(f"added step {position} to policy {args.policy_id}")

    run_with_store(action)


def policies_show(args: argparse.Namespace) -> None:
    """``router policies show POLICY_ID [--json]``."""

    async def action(store: BulkApiStore) -> None:
        found = await store.policies([args.policy_id])
        if not found:
            raise NotFound(f"There is no escalation policy {args.policy_id!r}.")
        print(found[0].model_dump_json() if args.json else "\n".join(describe_policy(found[0])))

    run_with_store(action)


def policies_list(args: argparse.Namespace) -> None:
    """``router policies list [--json]``."""

    async def action(store: BulkApiStore) -> None:
        for policy in await store.policies():
            print(policy.model_dump_json() if args.json else describe_policy(policy)[0])

    run_with_store(action)


def policies_delete(args: argparse.Namespace) -> None:
    """``router policies delete POLICY_ID``: open pages finish as they began."""

    async def action(store: BulkApiStore) -> None:
        if not await store.delete_policy(args.policy_id):
            raise NotFound(f"There is no escalation policy {args.policy_id!r}.")
        print(f"deleted policy {args.policy_id}")

    run_with_store(action)


def ack(args: argparse.Namespace) -> None:
    """``router ack ALERT_KEY --user U [--resolve]``: a PageAck on pages.acks."""
    config = settings()
    message = PageAck(
        alert_key=args.alert_key,
        user_id=user_id(args.user),
        action="resolve" if args.resolve else "ack",
        source="cli",
        at=datetime.now(UTC),
    )
    asyncio.run(publish_one(config, config.topic_acks, message, message.alert_key))
    verb = "resolved" if args.resolve else "acknowledged"
    print(f"{verb} {args.alert_key} as {args.user} ({cli_actor()})")


def page_json(page: Page) -> dict[str, object]:
    """A page as ``router pages list --json`` prints it."""
    return {
        "alert_key": page.alert_key,
        "event_id": page.event.event_id,
        "title": page.event.title,
        "policy_id": page.policy.id if page.policy else None,
        "status": page.status,
        "step": page.step,
        "round": page.round,
        "reply_code": page.reply_code,
        "opened_at": page.opened_at.isoformat(),
        "next_step_at": page.next_step_at.isoformat() if page.next_step_at else None,
        "answered_by": page.answered_by,
        "answered_via": page.answered_via,
        "answered_at": page.answered_at.isoformat() if page.answered_at else None,
    }


def _row(page: Page) -> list[str]:
    return [
        page.alert_key,
        page.event.event_id,
        page.policy.id if page.policy else "-",
        page.status,
        str(page.step),
        str(page.round),
        page.next_step_at.isoformat(timespec="seconds") if page.next_step_at else "-",
        page.answered_by or "-",
        page.answered_via or "-",
    ]


HEADER = ["ALERT KEY", "EVENT", "POLICY", "STATUS", "STEP", "ROUND", "NEXT STEP AT", "BY", "HOW"]


def pages_list(args: argparse.Namespace) -> None:
    """``router pages list [--open] [--json]``."""

    async def action(store: BulkApiStore) -> None:
        pages = await store.list_pages(only_open=args.open)
        if args.json:
            for page in pages:
                print(json.dumps(page_json(page)))
        else:
            print(table(HEADER, [_row(p) for p in pages]))

    run_with_store(action)


def pages_show(args: argparse.Namespace) -> None:
    """``router pages show ALERT_KEY [--json]``: the page, then every answer it got."""

    async def action(store: BulkApiStore) -> None:
        found = await store.page(args.alert_key)
        if found is None:
            raise NotFound(f"There is no page {args.alert_key!r}; see `router pages list`.")
        page, answers = found
        if args.json:
            body = {**page_json(page), "answers": answers}
            print(json.dumps(body, default=str))
            return
        print(table(HEADER, [_row(page)]))
        for a in answers:
            changed = "" if a["changed"] else " (changed nothing)"
            print(
                f"  {a['at'].isoformat()}  {a['action']}  by {a['user_id'] or '-'}  "
                f"via {a['source']}{changed}"
            )

    run_with_store(action)


def notify_after_option(parser: argparse.ArgumentParser) -> None:
    """``--notify-after`` for ``router contacts add`` and ``update``."""
    parser.add_argument(
        "--notify-after",
        metavar="DURATION",
        help="tell this method only this long after a page, if still open (0s: at once)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``policies``, ``ack`` and ``pages`` commands."""
    policies = sub.add_parser("policies", help="escalation policies").add_subparsers(
        dest="policies_command", required=True, metavar="ACTION"
    )
    add = policies.add_parser("add", help="a new policy (add its steps with add-step)")
    add.add_argument("policy_id")
    add.add_argument("--name", required=True)
    add.add_argument("--repeat", type=int, default=0, help="run the steps again N times")
    add.add_argument("--json", action="store_true")
    add.set_defaults(func=policies_add)
    step = policies.add_parser(
        "add-step", help="append a step: whom to page, then how long to wait"
    )
    step.add_argument("policy_id")
    step.add_argument("--delay", required=True, help="wait for an ack this long (30s, 5m, 1h)")
    step.add_argument("--user", action="append", help="a user to page (repeatable)")
    step.add_argument("--schedule", action="append", help="page who is on call (repeatable)")
    step.set_defaults(func=policies_add_step)
    for name, func, text in (
        ("show", policies_show, "one policy and its steps"),
        ("delete", policies_delete, "delete a policy (open pages finish as they began)"),
    ):
        p = policies.add_parser(name, help=text)
        p.add_argument("policy_id")
        if name == "show":
            p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
    listing = policies.add_parser("list", help="every policy")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=policies_list)

    ack_parser = sub.add_parser("ack", help="acknowledge (or resolve) a page")
    ack_parser.add_argument("alert_key", help="the event's dedup_key, else its event_id")
    ack_parser.add_argument("--user", required=True, help="who answers")
    ack_parser.add_argument("--resolve", action="store_true", help="resolve instead")
    ack_parser.set_defaults(func=ack)

    pages = sub.add_parser("pages", help="pages and their escalation").add_subparsers(
        dest="pages_command", required=True, metavar="ACTION"
    )
    plist = pages.add_parser("list", help="pages, newest first")
    plist.add_argument("--open", action="store_true", help="only open pages")
    plist.add_argument("--json", action="store_true", help="one JSON object per line")
    plist.set_defaults(func=pages_list)
    show = pages.add_parser("show", help="one page and every answer it got")
    show.add_argument("alert_key")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=pages_show)
