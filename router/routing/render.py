"""Turn an alert into what a delivery worker sends. Pure functions.

SMS text is measured in GSM 03.38 septets (or UTF-16 units when it needs
UCS-2) and cut to fit ``max_segments`` segments, so the worker never has to.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from router.directory.models import ContactMethod
from schemas import AlertEvent, WebhookMethod

SmsEncoding = Literal["GSM-7", "UCS-2"]

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")  # each costs an escape septet too
_GSM = _GSM_BASIC | _GSM_EXTENDED
_ELLIPSIS = "..."  # three GSM characters; "…" would force UCS-2


# The alphabet as regular expressions and, for ASCII text (most alerts'), as bytes to
# delete: an SMS is measured for every event, and both scan the text in C where a set
# tests it a character object at a time.
_NOT_GSM = re.compile("[^" + "".join(map(re.escape, sorted(_GSM))) + "]")
_EXTENDED = re.compile("[" + "".join(map(re.escape, sorted(_GSM_EXTENDED))) + "]")
_ASCII_GSM = bytes(sorted(ord(c) for c in _GSM if c.isascii()))
_ASCII_EXTENDED = bytes(sorted(ord(c) for c in _GSM_EXTENDED if c.isascii()))


def sms_encoding(text: str) -> SmsEncoding:
    """``GSM-7`` when every character is in the GSM 03.38 alphabet, else ``UCS-2``."""
    return "GSM-7" if _NOT_GSM.search(text) is None else "UCS-2"


#: An SMS's units in one segment alone, and in each of several (which carry a header).
_SEGMENT_UNITS: dict[SmsEncoding, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


def _segments(units: int, encoding: SmsEncoding) -> int:
    single, multi = _SEGMENT_UNITS[encoding]
    return 1 if units <= single else math.ceil(units / multi)


def _units(text: str, encoding: str) -> int:
    if encoding == "GSM-7":
        return len(text) + len(_EXTENDED.findall(text))
    return len(text.encode("utf-16-le")) // 2


def sms_segments(text: str) -> int:
    """How many SMS segments ``text`` takes (concatenated segments carry a header)."""
    return sms_measure(text)[1]


def sms_measure(text: str) -> tuple[SmsEncoding, int]:
    """``text``'s encoding (:func:`sms_encoding`) and segments (:func:`sms_segments`)."""
    if text.isascii():
        data = text.encode()
        if not data.translate(None, _ASCII_GSM):  # nothing left: all of it is GSM
            units = 2 * len(data) - len(data.translate(None, _ASCII_EXTENDED))
            return "GSM-7", _segments(units, "GSM-7")
    encoding = sms_encoding(text)
    return encoding, _segments(_units(text, encoding), encoding)


def fit_sms(text: str, max_segments: int, ending: str = "") -> str:
    """``text`` unchanged if it (then a space and ``ending``) fits ``max_segments``
    segments, else cut and ended with '...'; ``ending`` is never cut."""
    return measured_sms(text, max_segments, ending)[0]


def measured_sms(text: str, max_segments: int, ending: str = "") -> tuple[str, SmsEncoding, int]:
    """:func:`fit_sms`'s text with its encoding and segments (:func:`sms_measure`): a
    text that fits as it is, as most alerts' do, is measured once."""
    whole = text + " " + ending if ending else text
    encoding, segments = sms_measure(whole)
    if segments > max_segments:
        whole = _cut(text, max_segments, ending, encoding)
        encoding, segments = sms_measure(whole)
    return whole, encoding, segments


def _cut(text: str, max_segments: int, ending: str, encoding: SmsEncoding) -> str:
    """``text`` cut to leave room for '...' and `` ending`` in ``max_segments`` segments
    of ``encoding`` (the whole message's)."""
    ending = " " + ending if ending else ""
    single, multi = _SEGMENT_UNITS[encoding]
    capacity = single if max_segments == 1 else multi * max_segments
    budget = capacity - _units(ending, encoding) - _units(_ELLIPSIS, encoding)
    kept: list[str] = []
    used = 0
    for char in text:
        cost = _units(char, encoding)
        if used + cost > budget:
            break
        kept.append(char)
        used += cost
    # Never end on half a surrogate pair's worth of meaning: drop trailing spaces only.
    return "".join(kept).rstrip() + _ELLIPSIS + ending


def _one_line(text: str) -> str:
    """Every run of white space one space, none at either end (what ``re.sub(r"\\s+",
    " ", text).strip()`` gives: both read white space as ``str.isspace`` does)."""
    return " ".join(text.split())


one_line = _one_line


def sms_text(event: AlertEvent, max_segments: int, ending: str = "") -> str:
    """The SMS for ``event``: severity, kind, title, link, then body, cut to fit; then
    ``ending`` (a reply instruction), never cut."""
    return fit_sms(_sms_body(event), max_segments, ending)


def measured_sms_text(
    event: AlertEvent, max_segments: int, ending: str = ""
) -> tuple[str, SmsEncoding, int]:
    """:func:`sms_text` with its encoding and segments (:func:`measured_sms`)."""
    return measured_sms(_sms_body(event), max_segments, ending)


def _sms_body(event: AlertEvent) -> str:
    parts = [f"{event.severity.upper()} {event.kind.upper()}: {_one_line(event.title)}"]
    if event.url:
        parts.append(event.url)
    if event.body:
        parts.append("- " + _one_line(event.body))
    return " ".join(parts)


#: The last time :func:`iso_time` wrote, with its text: an event's time is written for
#: its email and again for its webhook's payload, one object both times. One tuple,
#: replaced whole, so a reader never sees one time with another's text.
_LAST_TIME: tuple[datetime | None, str] = (None, "")


def iso_time(moment: datetime) -> str:
    """``moment.isoformat()``, written by orjson (the same text, in under half the time)
    unless its offset has seconds, which orjson leaves out; the same object twice in a
    row is written once (by identity: equal times in other zones are other texts)."""
    global _LAST_TIME
    last = _LAST_TIME
    if last[0] is moment:
        return last[1]
    offset = moment.utcoffset()
    if offset is None or offset.seconds % 60 or offset.microseconds:
        text = moment.isoformat()
    else:
        text = orjson.dumps(moment).decode()[1:-1]
    _LAST_TIME = (moment, text)
    return text


def email_subject(event: AlertEvent) -> str:
    """One-line subject; newlines are folded so no header can be injected."""
    return f"[{event.severity.upper()}] {event.kind.upper()}: {_one_line(event.title)}"[:250]


def email_text(event: AlertEvent) -> str:
    """Plain-text email body with every field a responder needs."""
    lines = [event.title, ""]
    if event.body:
        lines += [event.body, ""]
    lines.append(f"Severity:    {event.severity}")
    lines.append(f"Kind:        {event.kind}")
    if event.occurred_at is not None:
        lines.append(f"Occurred at: {iso_time(event.occurred_at)}")
    if event.source:
        lines.append(f"Source:      {event.source}")
    if event.url:
        lines.append(f"Link:        {event.url}")
    if event.labels:
        lines.append(
            "Labels:      " + ", ".join(f"{k}={v}" for k, v in sorted(event.labels.items()))
        )
    lines.append(f"Event id:    {event.event_id}")
    return "\n".join(lines) + "\n"


def webhook_payload(
    event: AlertEvent, *, user_id: str, job_id: str, ack_url: str | None = None
) -> dict[str, object]:
    """The JSON object a webhook receives by default (``ack_url`` when links are on)."""
    payload: dict[str, object] = {
        "event_id": event.event_id,
        "job_id": job_id,
        "user_id": user_id,
        "kind": event.kind,
        "severity": event.severity,
        "title": event.title,
        "body": event.body,
        "url": event.url,
        "source": event.source,
        "dedup_key": event.dedup_key,
        "labels": event.labels,
        "occurred_at": iso_time(event.occurred_at) if event.occurred_at else None,
    }
    if ack_url is not None:
        payload["ack_url"] = ack_url
    return payload


def compact_json(value: object) -> str:
    """``value`` (a webhook payload: text, whole numbers, flags, nulls, and objects and
    lists of them; never a float, which orjson writes differently) as compact JSON
    text, non-ASCII kept: what ``json.dumps(value, separators=(",", ":"),
    ensure_ascii=False)`` writes (the bytes webhook receivers have always had), by
    orjson, several times faster; ``tests/unit/test_render.py`` holds the two equal
    over such values. A string orjson cannot write (a lone surrogate: it writes UTF-8
    only) goes through ``json``."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def webhook_body(
    event: AlertEvent, method: ContactMethod, *, job_id: str, ack_url: str | None = None
) -> str | None:
    """The HTTP body for ``method``: none for GET/HEAD/DELETE, the method's template, or JSON.

    A template's ``{{field}}`` placeholders take the payload's fields; when the
    request is JSON the values are JSON-escaped so a quote in a title cannot
    break the receiver's parser. Unknown placeholders are left as written.
    """
    return body_of(
        event,
        method.user_id,
        webhook_method(method),
        webhook_headers(method),
        method.webhook_body,
        job_id=job_id,
        ack_url=ack_url,
    )


def body_of(
    event: AlertEvent,
    user_id: str,
    http_method: WebhookMethod,
    headers: Mapping[str, str],
    template: str | None,
    *,
    job_id: str,
    ack_url: str | None = None,
) -> str | None:
    """:func:`webhook_body` from a method's prepared values (its HTTP method, its headers
    as sent and its template): what the compiled routing plan keeps per webhook."""
    if http_method in ("GET", "HEAD", "DELETE"):
        return None
    payload = webhook_payload(event, user_id=user_id, job_id=job_id, ack_url=ack_url)
    if template is None:
        return compact_json(payload)
    as_json = "json" in headers.get("Content-Type", "").lower()

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in payload:
            return match.group(0)
        value = payload[name]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return json.dumps(text, ensure_ascii=False)[1:-1] if as_json else text

    return _PLACEHOLDER.sub(fill, template)


def webhook_method(method: ContactMethod) -> WebhookMethod:
    """The HTTP method, POST unless the contact method says otherwise."""
    return method.webhook_method or "POST"


def webhook_headers(method: ContactMethod) -> dict[str, str]:
    """Headers to send: JSON content type by default, the method's own headers win."""
    headers = {"Content-Type": "application/json"}
    headers.update(method.webhook_headers)
    return headers


def webhook_url(method: ContactMethod) -> str:
    """The URL with the method's query-string values appended (NodePing ``querystrings``)."""
    if not method.webhook_query:
        return method.value
    return _with_query(method.value, tuple(sorted(method.webhook_query.items())))


@lru_cache(maxsize=4096)
def _with_query(url: str, extra: tuple[tuple[str, str], ...]) -> str:
    # Pure, and the same for every event a method receives: worked out once per URL.
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(extra)
    return urlunsplit(parts._replace(query=urlencode(query)))
