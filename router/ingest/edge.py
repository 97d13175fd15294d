"""``router ingest``'s HTTP edge: authenticate, limit, map (:mod:`router.ingest.mapping`), publish.

- ``POST /v1/alertmanager``, ``POST /v1/grafana``, ``POST /v1/events``: 200 with
  the published event ids only after the broker acknowledged every event of the
  request; 400/415/422 with ``{"error": reason, "message": ...}`` for bad input,
  401 without a valid bearer token, 413 over ``ROUTER_INGEST_MAX_BYTES``, 429
  over the source's rate, 503 when the broker does not take the events (the
  sender retries; events already taken come back as ``duplicate_event``).
- ``GET /healthz``, ``GET /readyz`` (the producer is connected and the broker
  answers), ``GET /metrics``.

Tokens and request bodies are never logged; a source is logged by the position
of its token in ``ROUTER_INGEST_TOKENS``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import structlog
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from router import metrics
from router.http.access import RateLimiter as RateLimiter  # router.app and tests import it here
from router.http.access import bearer_token
from router.http.health import Readiness
from router.ingest.mapping import (
    Audience,
    IngestMapping,
    Refusal,
    from_alertmanager_style,
    from_events_endpoint,
)
from router.pages.links import confirm_page, done_page, refusal_page
from router.pages.tokens import Refused, verify
from schemas import AlertEvent, PageAck

log = structlog.get_logger("router.ingest")

Publish = Callable[[list[AlertEvent]], Awaitable[None]]
ACK_PATH = "/v1/ack/{token}"
ENDPOINTS = {"/v1/alertmanager": "alertmanager", "/v1/grafana": "grafana", "/v1/events": "events"}


class BrokerUnavailable(Exception):
    """The broker did not acknowledge every event of a request."""


def authenticate(header: str | None, tokens: Sequence[str]) -> int | None:
    """The position of the bearer token in ``tokens`` (None: missing or wrong), compared
    as :func:`router.http.access.bearer_token` does: in constant time, every token."""
    token = bearer_token(header, tokens)
    return None if token is None else tokens.index(token)


@dataclass(frozen=True)
class IngestConfig:
    tokens: tuple[str, ...]
    max_bytes: int
    mapping: IngestMapping
    body_timeout_seconds: float = 30.0


async def _read_body(receive: Any, limit: int, within_seconds: float) -> bytes | Refusal:
    """The whole request body, or why there is none to use: larger than ``limit``
    (413), not complete within ``within_seconds`` (408), or cut off by the client
    before its ``Content-Length`` arrived (400). A partial body is never used."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within_seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return Refusal(
                        400, "incomplete_body", "the client closed before sending the whole body"
                    )
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return Refusal(413, "too_large", f"the body is larger than {limit} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        return Refusal(
            408,
            "body_timeout",
            f"the body did not arrive within {within_seconds:g} s "
            "(ROUTER_INGEST_BODY_TIMEOUT_SECONDS); send it again",
        )


@dataclass(frozen=True)
class AckLinkConfig:
    """Ack links: the secrets that verify them, and how an acknowledgement is sent."""

    secrets: tuple[str, ...]
    publish: Callable[[PageAck], Awaitable[None]]


def create_ingest_app(
    config: IngestConfig,
    limiter: RateLimiter,
    publish: Publish,
    readiness: Readiness,
    acks: AckLinkConfig | None = None,
) -> FastAPI:
    """The app of ``router ingest``: FastAPI, as ``router api`` (one HTTP stack). The
    endpoints read their bodies themselves (:func:`_read_body`: size and time limits,
    a partial body never used), so the framework only routes."""
    app = FastAPI(title="router ingest", docs_url=None, redoc_url=None, openapi_url=None)

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        if error.status_code == 405:
            return JSONResponse(
                {"error": "method_not_allowed", "message": "POST only"},
                405,
                headers={"allow": "POST"},
            )
        return JSONResponse(
            {"error": "not_found", "message": f"no endpoint {request.url.path}"}, 404
        )

    app.add_exception_handler(StarletteHTTPException, on_http_error)

    @app.get("/metrics")
    async def exposition() -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready, failed = await readiness.report()
        return JSONResponse(
            {"status": "ready"} if ready else {"status": "not ready", "failed": failed},
            200 if ready else 503,
        )

    async def endpoint(request: Request) -> JSONResponse:
        name = ENDPOINTS[request.url.path]
        status, body, extra = await _ingest(name, request.scope, request.receive)
        metrics.INGEST_REQUESTS.labels(name, str(status)).inc()
        return JSONResponse(
            body, status, headers={k.decode("latin-1"): v.decode("latin-1") for k, v in extra}
        )

    for path in ENDPOINTS:
        app.add_api_route(path, endpoint, methods=["POST"], include_in_schema=False)
    if acks is not None:
        _ack_routes(app, acks)

    async def _ingest(
        endpoint: str, scope: Mapping[str, Any], receive: Any
    ) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        source = authenticate(headers.get("authorization"), config.tokens)
        if source is None:
            log.warning("ingest_refused", endpoint=endpoint, status=401, reason="unauthorized")
            return (
                401,
                {"error": "unauthorized", "message": "send Authorization: Bearer <token>"},
                [(b"www-authenticate", b'Bearer realm="router ingest"')],
            )
        wait = limiter.allow(f"token-{source}")
        if wait:
            log.warning("ingest_refused", endpoint=endpoint, status=429, source=source)
            return (
                429,
                {"error": "rate_limited", "message": f"too many requests; retry in {wait:.1f} s"},
                [(b"retry-after", str(max(1, round(wait))).encode())],
            )
        declared = headers.get("content-length", "")
        body: bytes | Refusal
        if declared.isdigit() and int(declared) > config.max_bytes:
            body = Refusal(413, "too_large", f"the body is larger than {config.max_bytes} bytes")
        else:
            body = await _read_body(receive, config.max_bytes, config.body_timeout_seconds)
        events: list[AlertEvent] | Refusal
        if isinstance(body, Refusal):
            events = body
        else:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            events = _map(endpoint, body, headers, query)
        if isinstance(events, Refusal):
            log.warning(
                "ingest_refused",
                endpoint=endpoint,
                status=events.status,
                reason=events.reason,
                detail=events.message,
                source=source,
            )
            return events.status, events.body(), []
        try:
            await publish(events)
        except BrokerUnavailable as error:
            log.error("ingest_unavailable", endpoint=endpoint, error=str(error), alerts=len(events))
            return (
                503,
                {"error": "broker_unavailable", "message": str(error)},
                [(b"retry-after", b"5")],
            )
        metrics.INGEST_ALERTS.labels(endpoint).inc(len(events))
        log.info(
            "ingest_published",
            endpoint=endpoint,
            source=source,
            alerts=len(events),
            event_ids=[e.event_id for e in events][:20],
        )
        return 200, {"published": len(events), "event_ids": [e.event_id for e in events]}, []

    def _map(
        endpoint: str, body: bytes, headers: dict[str, str], query: dict[str, list[str]]
    ) -> list[AlertEvent] | Refusal:
        if endpoint == "events":
            return from_events_endpoint(body, headers)
        audience = Audience.from_query(query)
        if isinstance(audience, Refusal):
            return audience
        return from_alertmanager_style(endpoint, body, audience, config.mapping)

    return app


async def publish_all(
    send: Callable[[AlertEvent], Awaitable[asyncio.Future[Any]]],
    events: list[AlertEvent],
    within_seconds: float,
) -> None:
    """Queue every event, then wait for every acknowledgement (at most ``within_seconds``);
    :class:`BrokerUnavailable` unless the broker took them all."""
    try:
        async with asyncio.timeout(within_seconds):
            acks = [await send(event) for event in events]
            results = await asyncio.gather(*acks, return_exceptions=True)
    except TimeoutError:
        raise BrokerUnavailable(
            f"the broker did not acknowledge the events within {within_seconds:g} s"
        ) from None
    except Exception as error:
        raise BrokerUnavailable(f"the broker refused the events: {error}") from error
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise BrokerUnavailable(
            f"the broker refused {len(failed)} of {len(events)} events: {failed[0]}"
        )


def _ack_routes(app: FastAPI, acks: AckLinkConfig) -> None:
    """``/v1/ack/{token}``: GET shows the alert and a button, POST acknowledges."""
    no_store = {"cache-control": "no-store", "referrer-policy": "no-referrer"}

    @app.get(ACK_PATH)
    async def ack_page(token: str) -> HTMLResponse:
        claims = verify(acks.secrets, token, datetime.now(UTC))
        if isinstance(claims, Refused):
            log.warning("ack_link_refused", why=claims.why, method="GET")
            return HTMLResponse(refusal_page(claims), claims.status, headers=no_store)
        return HTMLResponse(confirm_page(claims), headers=no_store)

    @app.post(ACK_PATH)
    async def ack_now(token: str) -> HTMLResponse:
        now = datetime.now(UTC)
        claims = verify(acks.secrets, token, now)
        if isinstance(claims, Refused):
            log.warning("ack_link_refused", why=claims.why, method="POST")
            return HTMLResponse(refusal_page(claims), claims.status, headers=no_store)
        ack = PageAck(
            alert_key=claims.alert_key, user_id=claims.user_id, action="ack", source="link", at=now
        )
        try:
            await acks.publish(ack)
        except (BrokerUnavailable, KafkaError, TimeoutError) as error:
            log.warning("ack_link_unpublished", error=str(error))
            return HTMLResponse(
                "<!doctype html><title>Try again</title><p>The acknowledgement could not be "
                "sent just now; press the button again in a moment.</p>",
                503,
                headers=no_store,
            )
        log.info("ack_link_used", alert_key=claims.alert_key, user_id=claims.user_id)
        return HTMLResponse(done_page(claims), headers=no_store)
