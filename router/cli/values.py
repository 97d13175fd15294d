"""Command-line values: parsed and checked before anything is written. Pure.

Each parser returns the value in the form the store takes, or raises
:class:`router.errors.InvalidValue` naming the flag, the value and what would
be accepted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from router.errors import ConfigError, InvalidValue
from router.routing.rules import parse_duration
from router.settings import Settings
from schemas import Kind

_USER_ID = re.compile(r"^[^\s\x00-\x1f]{1,256}$")
_QUIET = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
KINDS: tuple[str, ...] = get_args(Kind)
TRANSPORTS: tuple[str, ...] = ("sms", "email", "webhook")


def settings() -> Settings:
    """Settings from the environment; a bad value names its variable."""
    try:
        return Settings()
    except ValidationError as error:
        raise ConfigError(describe_error(error)) from None


def log_settings() -> tuple[str, str]:
    """``ROUTER_LOG_FORMAT`` and ``ROUTER_LOG_LEVEL``, each at its default when unset or
    a value the setting cannot take: a command that reads its settings refuses that
    value itself (:func:`settings`), and its lines until then are at the defaults."""
    chosen = []
    for name in ("log_format", "log_level"):
        field = Settings.model_fields[name]
        value = os.environ.get(f"ROUTER_{name.upper()}", field.default)
        chosen.append(value if value in get_args(field.annotation) else field.default)
    return chosen[0], chosen[1]


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


def tags(values: Sequence[str] | None) -> list[str]:
    """Tags, trimmed, each once, in the order given."""
    out = list(dict.fromkeys(t.strip() for t in values or () if t.strip()))
    for tag in out:
        if len(tag) > 64 or "," in tag:
            raise InvalidValue("--tag", tag, "must be at most 64 characters without commas")
    return out


def duration(flag: str, value: str) -> timedelta:
    """``30m``, ``24h``, ``7d``... as a timedelta (the routing rules' parser), or
    :class:`InvalidValue` naming ``flag``."""
    try:
        return timedelta(seconds=parse_duration(value))
    except ValueError:
        raise InvalidValue(flag, value, "is a duration such as 30m, 24h or 7d") from None


def identifier(field: str, value: str) -> str:
    """A schedule or rotation id: 1 to 256 characters, no spaces or control characters."""
    if not _USER_ID.match(value):
        raise InvalidValue(field, value, "must be 1 to 256 characters with no spaces")
    return value


def user_list(flag: str, value: str) -> tuple[str, ...]:
    """A comma list of user ids, in order; a user may appear more than once."""
    users = tuple(u.strip() for u in value.split(","))
    if not users or any(not _USER_ID.match(u) for u in users):
        raise InvalidValue(flag, value, "must be a comma list of user ids, e.g. alice,bob")
    return users


def count(flag: str, value: str, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high``."""
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise InvalidValue(flag, value, f"must be a whole number from {low} to {high}")
    return number


_QUOTED = re.compile(r"'([^']*)'")


def _without_input(message: str, given: object) -> str:
    """``message`` with any quoted echo of ``given`` replaced by "the value", and of one
    of its comma-separated items (as the list settings' own checks quote them) by
    "one of its items"."""
    if not isinstance(given, str):
        return message
    items = {p.strip() for p in re.split(r"[,\n]", given)}

    def hide(match: re.Match[str]) -> str:
        quoted = match.group(1)
        if quoted and quoted in (given, given.strip()):
            return "the value"
        return "one of its items" if quoted and quoted in items else match.group(0)

    return _QUOTED.sub(hide, message)


def describe_error(error: ValidationError) -> str:
    """A settings error as sentences naming each variable and what is wrong with it.

    Built from each error's location and message only: pydantic's ``input`` (the
    value, or for a model-level error every setting, secrets included) is never
    shown, and a message that quotes the value has the quote removed.
    """
    problems = []
    for item in error.errors(include_url=False):
        message = _without_input(item["msg"].removeprefix("Value error, "), item.get("input"))
        if item["loc"]:
            name = "ROUTER_" + "_".join(str(p) for p in item["loc"]).upper()
            problems.append(f"{name}: {message}.")
        else:
            problems.append(f"{message}.")  # model-level checks name their variables
    return (
        " ".join(problems)
        + " Fix each variable named and run the command again (docs/settings.md says what "
        "each accepts; values are not shown, as some are secrets)."
    )
