"""The AsyncAPI document of the router, from FastStream's own generator.

``python -m router.asyncapi`` (part of ``make schemas``) writes
``schemas/asyncapi.json``; ``tests/unit/test_asyncapi.py`` fails while it is
stale. Topic names are the defaults; each is a setting (docs/settings.md, Topics).

FastStream infers a subscriber's payload from its handler's annotation. The
router's handlers take raw batches (the router decodes bodies itself, so bad
input becomes a dead letter instead of a framework error), so the two input
channels get their models here, the same JSON Schema as ``schemas/json/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from faststream.specification import AsyncAPI

from router import __version__
from router.app import create_app
from router.settings import Settings
from schemas import AlertEvent, ContactEvent, DeliveryStatus, InboundSms, PageAck

PATH = Path(__file__).parents[1] / "schemas" / "asyncapi.json"

DESCRIPTION = (
    "Routes alert events to per-user delivery jobs. Consumes `alerts` (AlertEvent), "
    "`contacts.events` (ContactEvent) and `deliveries.status` (DeliveryStatus, from delivery "
    "workers: failover, automatic opt-out, the page trail); publishes one job per chosen "
    "contact method to "
    "`deliveries.email`, `deliveries.sms` or `deliveries.webhook` (at least once: de-duplicate "
    "on `job_id`; keyed by `contact_method_id`), one decision per method considered to "
    "`routing.decisions`, and what it cannot route, unchanged, to `alerts.dlq`. Pages "
    "are answered on `pages.acks` (PageAck: acknowledge or resolve) and by SMS replies on "
    "`deliveries.replies` (InboundSms, from the SMS delivery worker)."
)


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a dict."""
    app = create_app(Settings())
    assert app.broker is not None
    spec = AsyncAPI(
        app.broker,
        title="notification-router",
        version=__version__,
        description=DESCRIPTION,
        schema_version="3.0.0",
    )
    doc: dict[str, Any] = json.loads(spec.to_specification().to_json())
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for channel, model in (
        ("alerts", AlertEvent),
        ("contacts.events", ContactEvent),
        ("deliveries.status", DeliveryStatus),
        ("pages.acks", PageAck),
        ("deliveries.replies", InboundSms),
    ):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        for name, message in doc["components"]["messages"].items():
            if name.startswith(f"{channel}:"):
                stale = message["payload"].get("$ref", "").rsplit("/", 1)[-1]
                schemas.pop(stale, None)
                message["payload"] = {"$ref": f"#/components/schemas/{model.__name__}"}
    return doc


def render() -> str:
    """The document as committed: sorted keys, two-space indent, newline-terminated."""
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Rewrite ``schemas/asyncapi.json``."""
    PATH.write_text(render())
    print(f"wrote {PATH.relative_to(PATH.parents[1])}")


if __name__ == "__main__":
    main()
