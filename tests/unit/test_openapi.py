"""The committed OpenAPI document is what FastAPI generates from router api today."""

from __future__ import annotations

import json

from router import openapi


def test_the_committed_openapi_document_is_current() -> None:
    assert openapi.PATH.read_text() == openapi.render(), "stale: run `make schemas`"


def test_the_document_is_openapi_3_1_with_every_directory_path() -> None:
    doc = json.loads(openapi.PATH.read_text())
    assert doc["openapi"].startswith("3.1")
    assert {
        "/v1/users",
        "/v1/users/{user_id}",
        "/v1/contact-methods",
        "/v1/contact-methods/count",
        "/v1/contact-methods/{method_id}",
        "/v1/contact-methods/{method_id}/mute",
        "/v1/contact-methods/{method_id}/unmute",
        "/v1/contact-methods/{method_id}/verify",
        "/v1/contact-methods/{method_id}/confirm",
        "/v1/opt-outs",
        "/v1/opt-outs/{address}",
        "/v1/trail/{event_id}",
        "/v1/held",
        "/v1/audit",
        "/v1/contact-methods/batch",
        "/v1/contact-methods/batch-delete",
        "/v1/users/{user_id}/contact-methods",
    } <= set(doc["paths"])
    assert {"User", "ContactMethod"} <= set(doc["components"]["schemas"])
