"""The committed AsyncAPI document is what FastStream generates from the app today."""

from __future__ import annotations

import json

from router import asyncapi


def test_the_committed_asyncapi_document_is_current() -> None:
    assert asyncapi.PATH.read_text() == asyncapi.render(), "stale: run `make schemas`"


def test_every_topic_is_a_channel_with_its_model() -> None:
    doc = json.loads(asyncapi.PATH.read_text())
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {
        "alerts",
        "contacts.events",
        "deliveries.status",
        "deliveries.email",
        "deliveries.sms",
        "deliveries.webhook",
        "routing.decisions",
        "alerts.dlq",
        "pages.acks",
        "deliveries.replies",
    }
    payloads = {m["payload"].get("$ref", "") for m in doc["components"]["messages"].values()}
    for model in (
        "AlertEvent",
        "ContactEvent",
        "DeliveryStatus",
        "EmailJob",
        "SmsJob",
        "WebhookJob",
        "Decision",
        "PageAck",
        "InboundSms",
    ):
        assert f"#/components/schemas/{model}" in payloads
