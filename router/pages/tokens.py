"""Signed ack links. Pure.

A token names the alert key, the user, the alert's title (so the page can say which
alert without a database) and when it expires, and is signed with HMAC-SHA256
(stdlib :mod:`hmac`). Several secrets may be valid at once while one is rotated: the
first signs, any verifies. The token in the link's path is the credential; a forged
or tampered token is refused (403), an expired one too (410), and neither changes
anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

_TITLE_CHARS = 200  # the link stays short enough for an SMS


@dataclass(frozen=True)
class AckLinks:
    """Where ack links point and how they are signed (``ROUTER_ACK_*``)."""

    base_url: str
    secrets: tuple[str, ...]
    ttl_seconds: int = 24 * 3600

    def url(self, alert_key: str, user_id: str, title: str, now: datetime) -> str:
        """The link for ``user_id`` to acknowledge ``alert_key``, valid for the TTL."""
        expires = now + timedelta(seconds=self.ttl_seconds)
        token = sign(self.secrets[0], Claims(alert_key, user_id, title[:_TITLE_CHARS], expires))
        return f"{self.base_url.rstrip('/')}/v1/ack/{token}"


@dataclass(frozen=True)
class Claims:
    """What a valid token says."""

    alert_key: str
    user_id: str
    title: str
    expires: datetime


@dataclass(frozen=True)
class Refused:
    """Why a token is not accepted: ``forged`` (403) or ``expired`` (410)."""

    why: Literal["forged", "expired"]

    @property
    def status(self) -> int:
        return 410 if self.why == "expired" else 403


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def sign(secret: str, claims: Claims) -> str:
    """``claims`` as a URL-safe token signed with ``secret``."""
    body = {
        "k": claims.alert_key,
        "u": claims.user_id,
        "t": claims.title,
        "e": int(claims.expires.timestamp()),
    }
    payload = _b64(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{payload}.{_mac(secret, payload)}"


def verify(secrets: tuple[str, ...], token: str, now: datetime) -> Claims | Refused:
    """The claims of ``token`` if one of ``secrets`` signed it and it has not expired."""
    payload, dot, mac = token.partition(".")
    if not dot or not secrets:
        return Refused("forged")
    if not any(hmac.compare_digest(_mac(s, payload), mac) for s in secrets):
        return Refused("forged")
    try:
        body = json.loads(_unb64(payload))
        claims = Claims(
            str(body["k"]),
            str(body["u"]),
            str(body.get("t", "")),
            datetime.fromtimestamp(int(body["e"]), UTC),
        )
    except (ValueError, KeyError, TypeError):
        return Refused("forged")  # signed by us but not ours to read: treat as forged
    if claims.expires <= now:
        return Refused("expired")
    return claims
