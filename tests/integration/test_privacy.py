"""Addresses in odd forms never reach a log line whole, through a real `router run`."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.integration.conftest import RouterProcess, add_contact, cli_ok, collect, produce
from tests.integration.test_end_to_end import alert, wait_for_topics
from tests.privacy import leaks_in

#: Forms the patterns of a log scrubber tend to miss; the field says what they are.
ODD = [
    ("sms", "+1 415 555 26"),  # short, spaced: not a valid number
    ("sms", "0044 20 7946 0018"),  # national prefix form
    ("email", "alice.secret@localhost"),  # no dot in the domain
    ("email", "bob@"),  # local part only
    ("email", "ａｌｉｃｅ@例え.jp"),  # full-width local part, unicode domain
    ("email", "zoë.privé@exämple.de"),
    ("sms", "+٤٤٢٠٧٩٤٦٠٠١٨"),  # Arabic-Indic digits
]


def json_forms(value: str) -> set[str]:
    """``value`` as it may appear in a log line: raw, JSON-escaped, and its local part."""
    forms = {value, json.dumps(value)[1:-1]}
    local = value.partition("@")[0]
    if "@" in value and len(local) > 1:
        forms.add(local)
    return forms


async def test_odd_address_forms_never_appear_whole_in_any_log_line(
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
) -> None:
    cli_ok(router_env, "users", "add", "zoe")
    add_contact(router_env, "zoe", "email", "zoë.privé@exämple.de")
    router = start_router(router_env)
    bootstrap = router_env["ROUTER_KAFKA_BOOTSTRAP_SERVERS"]
    contact_events = router_env["ROUTER_TOPIC_CONTACT_EVENTS"]
    alerts, dlq = router_env["ROUTER_TOPIC_ALERTS"], router_env["ROUTER_TOPIC_DLQ"]
    await wait_for_topics(bootstrap, [contact_events, alerts])
    for transport, address in ODD:
        for kind in ("opt_out", "opt_in"):
            await produce(
                bootstrap,
                contact_events,
                json.dumps({"type": kind, "transport": transport, "address": address}).encode(),
            )
    await produce(bootstrap, alerts, alert("e-zoe", ["zoe"]))
    decisions = router_env["ROUTER_TOPIC_DECISIONS"]
    await collect(
        bootstrap,
        [dlq, decisions],
        until=lambda s: len(s[decisions]) >= 1 and len(s[dlq]) >= 8,
    )
    log = router.log()
    assert "contact_event_rejected" in log and "opt_out_applied" in log
    for _, address in ODD:
        for form in json_forms(address):
            assert form not in log, f"{form!r} appears in the router's log"
    assert leaks_in(log) == []
