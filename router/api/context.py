"""What every ``router api`` route receives: the store, the settings, who is
calling (bearer token, rate limit), and the HTTP rules every resource follows
(ETag and If-Match, Idempotency-Key)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from router.api.problems import Problem, scrub
from router.db.api_bulk import BulkApiStore
from router.http.access import RateLimiter, bearer_token
from router.settings import Settings

log = structlog.get_logger("router.api")

#: Publishes a verification job: (topic, job, key).
Publish = Callable[[str, BaseModel, str], Awaitable[None]]


@dataclass
class ApiContext:
    """The service's state, one per process."""

    store: BulkApiStore
    settings: Settings
    tokens: dict[str, tuple[str, bool]]
    limiter: RateLimiter
    publish: Publish


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's name (the audit log's actor) and the context."""

    name: str
    ctx: ApiContext


def context(request: Request) -> ApiContext:
    """The service's state."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


def _caller(request: Request, ctx: ApiContext, write: bool) -> Caller:
    token = bearer_token(request.headers.get("authorization"), ctx.tokens)
    if token is None:
        raise Problem(
            401,
            "Send Authorization: Bearer <token> with a token from ROUTER_API_READ_TOKENS "
            "or ROUTER_API_WRITE_TOKENS.",
            headers={"WWW-Authenticate": 'Bearer realm="router api"'},
        )
    name, may_write = ctx.tokens[token]
    wait = ctx.limiter.allow(name)
    if wait:
        log.warning("api_rate_limited", token=name, path=scrub(request.url.path))
        raise Problem(
            429,
            f"Too many requests for this token; retry in {wait:.1f} s.",
            headers={"Retry-After": str(max(1, round(wait + 0.5)))},
        )
    if write and not may_write:
        raise Problem(403, "This token may read only; use one from ROUTER_API_WRITE_TOKENS.")
    return Caller(name, ctx)


def reader(request: Request, ctx: ApiContext = Depends(context)) -> Caller:  # noqa: B008
    """A caller with any valid token (401 without one, 429 over its rate)."""
    return _caller(request, ctx, write=False)


def writer(request: Request, ctx: ApiContext = Depends(context)) -> Caller:  # noqa: B008
    """A caller with a write token (403 for a read token)."""
    return _caller(request, ctx, write=True)


def etag(resource: BaseModel) -> str:
    """The resource's version: a strong ETag of its JSON."""
    digest = hashlib.sha256(resource.model_dump_json().encode()).hexdigest()[:32]
    return f'"{digest}"'


def matches(if_match: str | None) -> Callable[[Any], bool] | None:
    """A check for the store (None: no If-Match sent): the stored record's ETag is
    one of those ``If-Match`` lists, or it says ``*``."""
    if if_match is None:
        return None
    wanted = {t.strip().removeprefix("W/") for t in if_match.split(",")}
    return lambda record: "*" in wanted or etag(record) in wanted


def resource(model: BaseModel, status: int = 200) -> JSONResponse:
    """A single resource with its ETag."""
    return JSONResponse(model.model_dump(mode="json"), status, headers={"ETag": etag(model)})


async def idempotent(
    request: Request, caller: Caller, make: Callable[[], Awaitable[JSONResponse]]
) -> JSONResponse:
    """``make()``'s answer, or with an ``Idempotency-Key`` seen within 24 h the first
    answer to it (nothing done again); the same key with another body is a 422, and
    while the first request with the key still runs, a 409. The key is taken before
    ``make()`` runs, so two concurrent requests never both create."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return await make()
    if not 1 <= len(key) <= 255:
        raise Problem(
            422,
            "Idempotency-Key must be 1 to 255 characters.",
            [{"pointer": "#/header/Idempotency-Key", "detail": "1 to 255 characters"}],
        )
    body = await request.body()
    fingerprint = hashlib.sha256(
        b"\n".join(
            [request.method.encode(), request.url.path.encode(), request.url.query.encode(), body]
        )
    ).hexdigest()
    store = caller.ctx.store
    stored = await store.claim_key(caller.name, key, fingerprint)
    if stored is not None:
        first_hash, status, first_body = stored
        if status == 0:
            raise Problem(
                409,
                "A request with this Idempotency-Key is still in progress; retry in a moment.",
                headers={"Retry-After": "1"},
            )
        if first_hash != fingerprint:
            raise Problem(
                422,
                "This Idempotency-Key was used with another request within 24 h; use a new key.",
                [{"pointer": "#/header/Idempotency-Key", "detail": "reused with another body"}],
            )
        return JSONResponse(first_body, status, headers={"Idempotent-Replayed": "true"})
    try:
        response = await make()
    except BaseException:
        await store.release_key(caller.name, key)  # refused or failed: nothing to replay
        raise
    await store.keep_answer(
        caller.name, key, response.status_code, json.loads(bytes(response.body))
    )
    return response
