"""``router contacts ...``: contact methods, one command a function.

``router.cli.parser`` parses arguments and calls these; values are checked by
:mod:`router.cli.values` before the store is touched.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from router.cli import table
from router.cli.common import (
    cli_actor,
    describe_method,
    method_filter,
    print_record,
    publish_one,
    run_with_store,
)
from router.cli.values import KINDS, instant, pairs, settings, suppress_flags, tags, user_id
from router.db.api_bulk import BulkApiStore
from router.db.api_store import ApiStore
from router.db.store import PgStore
from router.directory import addresses, edits, verification
from router.directory.models import NOTIFY_AFTER_MAX_SECONDS, ContactMethod
from router.directory.writes import NewContactMethod
from router.errors import InvalidValue
from router.pages.policy import parse_delay
from router.routing.rules import webhook_problem
from router.settings import Settings
from schemas import Transport


def contacts_add(args: argparse.Namespace) -> None:
    """``router contacts add``."""
    transport: Transport = args.transport
    value = addresses.normalize(transport, args.value, args.region, settings().target_policy())
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
        webhook_headers=addresses.normalize_headers(
            pairs(args.header, ":", "--header"), "--header"
        ),
        webhook_query=pairs(args.query, "=", "--query"),
        webhook_body=args.body,
        metadata=pairs(args.meta, "=", "--meta"),
        tags=tags(args.tag),
        notify_after_seconds=_notify_after(args) or 0,
    )

    async def action(store: ApiStore) -> None:
        method = await store.add_contact_method(new, actor=cli_actor())
        print_record(method, args.json, "added " + describe_method(method))

    run_with_store(action)


def _notify_after(args: argparse.Namespace) -> int | None:
    """``--notify-after`` in seconds, or None when not given."""
    if args.notify_after is None:
        return None
    try:
        seconds = parse_delay(args.notify_after)
    except ValueError as error:
        raise InvalidValue(
            "--notify-after", args.notify_after, "a duration such as 0s, 30s, 5m"
        ) from error
    if seconds > NOTIFY_AFTER_MAX_SECONDS:
        raise InvalidValue("--notify-after", args.notify_after, "at most 7d")
    return seconds


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
    async def action(store: ApiStore) -> None:
        method = await store.update_contact_method(method_id, changes, actor=cli_actor())
        print_record(method, as_json, f"{verb} " + describe_method(method))

    run_with_store(action)


def _address_changes(
    args: argparse.Namespace, method: ContactMethod, config: Settings
) -> dict[str, Any]:
    """--value and the webhook options, by the rules PATCH /v1/contact-methods uses."""
    changes: dict[str, Any] = {}
    if args.value is not None:
        changes.update(
            edits.value_change(
                method,
                args.value,
                args.region,
                config.target_policy(),
                allow_landline=args.allow_landline,
                field="--value",
            )
        )
    changes.update(
        edits.checked_webhook(
            method.transport,
            method=args.webhook_method,
            headers=pairs(args.header, ":", "--header") if args.header else None,
            query=pairs(args.query, "=", "--query") if args.query else None,
            body=args.body,
            header_field="--header",
        )
    )
    if method.transport == "webhook" and "value" in changes:
        problem = webhook_problem(method.model_copy(update=changes), config.target_policy())
        if problem:
            raise InvalidValue("--value", "", f"is a webhook target the router refuses: {problem}")
    return changes


def contacts_update(args: argparse.Namespace) -> None:
    """``router contacts update``: the same rules as ``PATCH /v1/contact-methods/{id}``."""
    changes = _method_changes(args)
    address_flags = (args.value, args.webhook_method, args.header, args.query, args.body)
    notify_after = _notify_after(args)
    if notify_after is not None:
        changes["notify_after_seconds"] = notify_after
    if not changes and not (args.meta or args.tag or args.untag or any(address_flags)):
        raise InvalidValue(
            "contacts update",
            args.id,
            "needs at least one setting to change; see `router contacts update --help`",
        )
    config = settings()

    async def action(store: ApiStore) -> None:
        current = await store.get_contact_method(args.id)
        extra = {**_extras_changes(args, current), **_address_changes(args, current, config)}
        method = await store.update_contact_method(args.id, {**changes, **extra}, actor=cli_actor())
        print_record(method, args.json, "updated " + describe_method(method))

    run_with_store(action)


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
    after = edits.decode_cursor(args.cursor) if args.cursor else None
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
            print(f"more: --cursor {edits.encode_cursor(methods[-1])}{page}", file=sys.stderr)

    run_with_store(action)


def contacts_count(args: argparse.Namespace) -> None:
    """``router contacts count``."""

    async def action(store: PgStore) -> None:
        count = await store.count_contact_methods(method_filter(args))
        print(json.dumps({"count": count}) if args.json else count)

    run_with_store(action)


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

    run_with_store(action)


def contacts_primary(args: argparse.Namespace) -> None:
    """``router contacts primary USER TRANSPORT``."""

    async def action(store: PgStore) -> None:
        method = await store.primary_contact_method(args.user_id, args.transport)
        print_record(method, args.json, describe_method(method))

    run_with_store(action)


def contacts_delete(args: argparse.Namespace) -> None:
    """``router contacts delete ID`` or ``--user U --all`` (one transaction)."""
    if bool(args.id) == bool(args.user and args.all) or (args.user and not args.all):
        raise InvalidValue(
            "contacts delete", args.id or args.user or "", "takes a method ID, or --user USER --all"
        )

    async def action(store: BulkApiStore) -> None:
        if args.id:
            await store.delete_contact_method(args.id, actor=cli_actor())
            print(f"deleted contact method {args.id}")
        else:
            count = await store.delete_user_methods(args.user, actor=cli_actor())
            print(f"deleted {count} contact method(s) of user {args.user}")

    run_with_store(action)


def _check_stored_webhook(method: ContactMethod, config: Settings) -> None:
    """Refuse to send a code to a webhook that routing would skip as ``unsafe_target``
    (stored by SQL, or before the rules existed)."""
    problem = webhook_problem(method, config.target_policy())
    if problem:
        raise InvalidValue(
            "contacts verify",
            method.id,
            f"is a webhook the router will not call ({problem}); delete it and add it again "
            "with a safe URL and headers",
        )


def contacts_verify(args: argparse.Namespace) -> None:
    """``router contacts verify``: send a short-lived code to the method itself."""
    config = settings()

    async def action(store: PgStore) -> None:
        _check_stored_webhook(await store.get_contact_method(args.id), config)
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

    run_with_store(action)


def contacts_confirm(args: argparse.Namespace) -> None:
    """``router contacts confirm``: mark verified when the code is right and fresh."""
    config = settings()

    async def action(store: ApiStore) -> None:
        method = await store.confirm_verification(
            args.id,
            lambda stored: verification.code_matches(args.id, args.code, stored),
            config.verification_max_attempts,
        )
        await store.audit(cli_actor(), "verify", "contact_method", method.id, {"verified": True})
        print_record(method, args.json, "verified " + describe_method(method))

    run_with_store(action)
