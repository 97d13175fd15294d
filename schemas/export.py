"""Write the JSON Schema of every wire model to ``schemas/json/``.

Run ``python -m schemas.export`` (or ``make schemas``) after changing a model;
``tests/unit/test_schemas.py`` fails while the committed files are stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.alert import AlertEvent
from schemas.contact_event import ContactEvent
from schemas.decision import Decision
from schemas.jobs import EmailJob, SmsJob, WebhookJob
from schemas.pages import InboundSms, PageAck
from schemas.status import DeliveryStatus

JSON_DIR = Path(__file__).parent / "json"

MODELS: dict[str, type[BaseModel]] = {
    "alert_event": AlertEvent,
    "email_job": EmailJob,
    "sms_job": SmsJob,
    "webhook_job": WebhookJob,
    "decision": Decision,
    "contact_event": ContactEvent,
    "delivery_status": DeliveryStatus,
    "page_ack": PageAck,
    "inbound_sms": InboundSms,
}


def render(model: type[BaseModel]) -> str:
    """The JSON Schema of ``model`` as committed: validation mode, sorted, newline-terminated."""
    return json.dumps(model.model_json_schema(mode="validation"), indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Rewrite every schema file."""
    JSON_DIR.mkdir(exist_ok=True)
    for name, model in MODELS.items():
        (JSON_DIR / f"{name}.schema.json").write_text(render(model))
        print(f"wrote schemas/json/{name}.schema.json")


if __name__ == "__main__":
    main()
