"""What delivery workers receive: SMS that fit, one-line subjects, webhook requests."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from router.routing import render
from schemas import AlertEvent
from tests.conftest import make_event, make_method


def event(**fields: object) -> AlertEvent:
    return make_event(**fields)


def test_gsm_text_uses_160_then_153_per_segment() -> None:
    assert render.sms_segments("a" * 160) == 1
    assert render.sms_segments("a" * 161) == 2
    assert render.sms_segments("a" * 306) == 2
    assert render.sms_segments("a" * 307) == 3


def test_extended_gsm_characters_cost_two() -> None:
    assert render.sms_segments("{" * 80) == 1
    assert render.sms_segments("{" * 81) == 2


def test_non_gsm_text_is_ucs2_with_70_then_67() -> None:
    assert render.sms_encoding("Störung ✓") == "UCS-2"
    assert render.sms_segments("✓" * 70) == 1
    assert render.sms_segments("✓" * 71) == 2


# The GSM 03.38 alphabet as the standard lists it: the basic set, then the extension
# table's characters (each sent as an escape and itself).
GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = set("^{}\\[~]|€\f")
SMS_TEXT = st.text(
    st.sampled_from(sorted(GSM_BASIC | GSM_EXTENDED)) | st.characters(codec="utf-8"),
    max_size=400,
)


@given(SMS_TEXT)
def test_an_sms_is_measured_character_by_character_as_the_alphabet_says(text: str) -> None:
    # The renderer scans with regular expressions; this is the same count written out.
    if set(text) <= GSM_BASIC | GSM_EXTENDED:
        units = sum(2 if c in GSM_EXTENDED else 1 for c in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    segments = 1 if units <= single else -(-units // multi)
    assert render.sms_measure(text) == (encoding, segments)


@given(SMS_TEXT, st.integers(min_value=1, max_value=4), st.sampled_from(["", "Reply 1 to ack"]))
def test_a_fitted_sms_comes_with_its_own_measure(text: str, segments: int, ending: str) -> None:
    fitted = render.fit_sms(text, segments, ending)
    assert render.measured_sms(text, segments, ending) == (fitted, *render.sms_measure(fitted))


def test_long_alerts_are_cut_to_the_segment_limit_with_an_ellipsis() -> None:
    text = render.sms_text(event(body="x" * 2000), max_segments=2)
    assert render.sms_segments(text) == 2
    assert text.endswith("...")
    assert text.startswith("CRITICAL DOWN: db-1 down")


@given(st.text(min_size=1, max_size=1500), st.integers(min_value=1, max_value=5))
def test_sms_text_always_fits_the_limit(body: str, segments: int) -> None:
    text = render.sms_text(event(body=body), max_segments=segments)
    assert render.sms_segments(text) <= segments


def test_url_comes_before_the_body_so_truncation_keeps_it() -> None:
    text = render.sms_text(event(url="https://x.example/1", body="y" * 1000), max_segments=1)
    assert "https://x.example/1" in text


@given(
    st.text(st.characters(codec="utf-8") | st.sampled_from(" \t\n\r\x0b\x0c\x1c\x85\u2028\u3000"))
)
def test_folding_white_space_is_what_the_regular_expression_gave(text: str) -> None:
    assert render.one_line(text) == re.sub(r"\s+", " ", text).strip()


def test_email_subject_is_one_line() -> None:
    subject = render.email_subject(event(title="line one\r\nBcc: evil@example.com"))
    assert "\n" not in subject and "\r" not in subject
    assert subject.startswith("[CRITICAL] DOWN: line one")


def test_email_text_has_the_fields_a_responder_needs() -> None:
    text = render.email_text(
        event(body="details", url="https://x.example", source="mon", labels={"team": "db"})
    )
    for expected in (
        "db-1 down",
        "details",
        "Severity:    critical",
        "https://x.example",
        "team=db",
        "Event id:    e1",
        "Source:      mon",
    ):
        assert expected in text


# Any offset a time zone may have: whole minutes (every real zone's today), and seconds
# and microseconds (historical local mean times, zones made in code).
OFFSETS = st.one_of(
    st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
        lambda minutes: timedelta(minutes=minutes)
    ),
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)
ZONES = st.one_of(st.none(), st.just(UTC), OFFSETS.map(timezone))
# Away from the calendar's ends, where another zone's time would not exist.
TIMES = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 1, 1), timezones=ZONES)


@given(TIMES, TIMES)
def test_an_alert_time_is_written_as_isoformat_writes_it(first: datetime, second: datetime) -> None:
    """The email's and the webhook's time: ``isoformat``'s text for any time in any zone,
    naive or not, the same time asked twice in a row, or an equal time in another zone
    (which must not get the first one's text)."""
    in_another_zone = first.astimezone(timezone(timedelta(hours=5))) if first.tzinfo else first
    for moment in (first, first, second, in_another_zone, first):
        assert render.iso_time(moment) == moment.isoformat()


def test_an_alert_time_read_from_json_is_written_as_isoformat_writes_it() -> None:
    """Times as alerts carry them: parsed by pydantic, with its own zone type."""
    for text in ("2026-03-01T10:00:00Z", "2026-03-01T10:00:00.250+05:30", "2026-03-01T10:00-08:00"):
        occurred_at = make_event(occurred_at=text).occurred_at
        assert occurred_at is not None
        assert render.iso_time(occurred_at) == occurred_at.isoformat()


def test_default_webhook_is_a_json_post_of_the_alert() -> None:
    method = make_method("w1", transport="webhook")
    body = render.webhook_body(event(), method, job_id="j1")
    assert render.webhook_method(method) == "POST"
    assert render.webhook_headers(method) == {"Content-Type": "application/json"}
    assert body is not None
    payload = json.loads(body)
    assert (
        payload["event_id"] == "e1"
        and payload["job_id"] == "j1"
        and payload["title"] == "db-1 down"
    )


def test_webhook_options_follow_the_contact_method() -> None:
    method = make_method(
        "w1",
        transport="webhook",
        value="https://h.example/x?a=1",
        webhook_method="PUT",
        webhook_headers={"Authorization": "Bearer t"},
        webhook_query={"b": "2"},
        webhook_body='{"text": "{{title}} ({{severity}}) {{unknown}}"}',
    )
    body = render.webhook_body(event(title='say "hi"'), method, job_id="j1")
    assert body == '{"text": "say \\"hi\\" (critical) {{unknown}}"}'
    assert json.loads(body)["text"].startswith('say "hi"')
    assert render.webhook_url(method) == "https://h.example/x?a=1&b=2"
    assert render.webhook_headers(method)["Authorization"] == "Bearer t"


def test_get_webhooks_carry_no_body() -> None:
    method = make_method("w1", transport="webhook", webhook_method="GET")
    assert render.webhook_body(event(), method, job_id="j1") is None


#: What a webhook payload holds: text (any code point, lone surrogates too), nulls,
#: whole numbers, flags, and objects and lists of them.
any_text = st.text(st.characters(exclude_categories=()))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_webhook_json_is_written_as_the_standard_library_writes_it(value: object) -> None:
    """orjson writes webhook bodies; receivers get the bytes ``json.dumps`` gave them."""
    assert render.compact_json(value) == json.dumps(
        value, separators=(",", ":"), ensure_ascii=False
    )


def test_a_lone_surrogate_in_a_webhook_body_is_still_written() -> None:
    assert render.compact_json({"title": "a\ud800b"}) == '{"title":"a\ud800b"}'
