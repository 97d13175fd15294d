"""Verification codes, as the on-call tools do it: a short-lived code sent to the
method itself, confirmed by the user. Pure, except for the random code.

Only a hash of the code is stored; wrong and expired codes are counted, and
after ``max_attempts`` wrong ones the code is void and a new one is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime

from router.directory.models import ContactMethod
from router.routing.build import text_job
from schemas import AlertEvent, DeliveryJob

CODE_DIGITS = 6


def new_code() -> str:
    """A random six-digit code."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def hash_code(method_id: str, code: str) -> str:
    """What is stored instead of the code: bound to the method, so one hash fits one method."""
    return hashlib.sha256(f"{method_id}:{code.strip()}".encode()).hexdigest()


def code_matches(method_id: str, code: str, stored_hash: str) -> bool:
    """Whether ``code`` is the one whose hash was stored (constant-time comparison)."""
    return hmac.compare_digest(hash_code(method_id, code), stored_hash)


def verification_job(
    method: ContactMethod, code: str, expires_at: datetime, now: datetime
) -> DeliveryJob:
    """The job that carries ``code`` to ``method``, for the transport's delivery worker."""
    minutes = max(1, round((expires_at - now).total_seconds() / 60))
    text = f"Your notification-router verification code is {code}. It expires in {minutes} minutes."
    event = AlertEvent.model_validate(
        {
            "event_id": f"verification:{uuid.uuid4()}",
            "kind": "diagnostic",
            "severity": "info",
            "user_ids": [method.user_id],
            "title": "Verification code",
            "body": text,
            "occurred_at": now,
        },
        strict=False,
    )
    payload = f'{{"type":"verification","code":"{code}","contact_method_id":"{method.id}"}}'
    return text_job(event, method, now, text, payload)
