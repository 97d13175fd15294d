"""``/v1/contact-methods``: list (filters, cursor pages), count, create, read,
change (the value included), delete, mute, unmute, verify and confirm.

Values pass the same rules as ``router contacts add`` and ``update``
(:mod:`router.directory.edits`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from router.api.bodies import (
    ConfirmBody,
    ContactMethodPage,
    ContactMethodPatch,
    Count,
    MuteBody,
    NewContactMethod,
    SyncedContactMethod,
    VerificationSent,
)
from router.api.context import Caller, idempotent, matches, reader, resource, writer
from router.api.problems import Problem
from router.directory import edits, verification, writes
from router.directory.manage import MethodFilter
from router.directory.models import ContactMethod
from router.errors import InvalidValue
from router.routing.rules import webhook_problem
from schemas import Transport

router = APIRouter(prefix="/v1/contact-methods", tags=["contact methods"])

IfMatch = Annotated[str | None, Header(description="An ETag from a GET; 412 if stale.")]
Reader = Annotated[Caller, Depends(reader)]
Writer = Annotated[Caller, Depends(writer)]
SINGLE: dict[int | str, dict[str, Any]] = {
    200: {"headers": {"ETag": {"schema": {"type": "string"}}}}
}


def _filter(
    request: Request,
    user_id: str | None = None,
    transport: Transport | None = None,
    tag: str | None = None,
    verified: bool | None = None,
    search: Annotated[str | None, Query(max_length=256)] = None,
) -> MethodFilter:
    """The list filters; ``metadata.KEY=VALUE`` (repeatable) matches metadata."""
    metadata = {
        k.removeprefix("metadata."): v
        for k, v in request.query_params.items()
        if k.startswith("metadata.") and len(k) > len("metadata.")
    }
    return MethodFilter(
        user_id=user_id,
        transport=transport,
        verified=verified,
        search=search,
        metadata=metadata or None,
        tag=tag,
    )


Filter = Annotated[MethodFilter, Depends(_filter)]


@router.get("", response_model=ContactMethodPage)
async def list_methods(
    caller: Reader,
    where: Filter,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    external_id: str | None = None,
) -> ContactMethodPage:
    """Methods in (user, transport, value) order, a page at a time: pass ``next_cursor``
    back as ``cursor``. Keyset pages: a method added meanwhile never shows twice.
    ``external_id`` finds the one method with that id in the system it is synced from."""
    if external_id is not None:
        found = await caller.ctx.store.method_by_external_id(external_id)
        return ContactMethodPage(items=[found] if found else [], next_cursor=None)
    after = edits.decode_cursor(cursor, "cursor") if cursor else None
    methods = await caller.ctx.store.list_contact_methods(where, after=after, limit=limit + 1)
    more, methods = len(methods) > limit, methods[:limit]
    return ContactMethodPage(
        items=methods, next_cursor=edits.encode_cursor(methods[-1]) if more else None
    )


@router.get("/count", response_model=Count)
async def count_methods(caller: Reader, where: Filter) -> Count:
    """How many methods the same filters match."""
    return Count(count=await caller.ctx.store.count_contact_methods(where))


def new_method(
    body: SyncedContactMethod, user_id: str, caller: Caller
) -> tuple[writes.NewContactMethod, str | None]:
    """The method to create and its external id, the value checked by the CLI's rules."""
    policy = caller.ctx.settings.target_policy()
    value = edits.checked_value(
        body.transport, body.value, body.region, policy, allow_landline=body.allow_landline
    )
    webhook = edits.checked_webhook(
        body.transport,
        method=body.webhook_method,
        headers=body.webhook_headers,
        query=body.webhook_query,
        body=body.webhook_body,
    )
    new = writes.NewContactMethod(
        user_id=user_id,
        transport=body.transport,
        value=value,
        label=body.label,
        is_primary=body.is_primary,
        verified=body.verified,
        metadata=body.metadata,
        tags=tuple(dict.fromkeys(body.tags)),
        **webhook,
    )
    return new, body.external_id


@router.post("", status_code=201, response_model=ContactMethod)
async def create_method(body: NewContactMethod, request: Request, caller: Writer) -> JSONResponse:
    """Create a method (its ``id`` assigned here); the value is normalized and checked."""
    new, external_id = new_method(body, body.user_id, caller)

    async def make() -> JSONResponse:
        method = await caller.ctx.store.add_contact_method(
            new, external_id=external_id, actor=caller.name
        )
        return resource(method, 201)

    return await idempotent(request, caller, make)


@router.get("/{method_id}", response_model=ContactMethod, responses=SINGLE)
async def get_method(method_id: str, caller: Reader) -> JSONResponse:
    """One method, with its ETag."""
    return resource(await caller.ctx.store.get_contact_method(method_id))


def changes_of(body: ContactMethodPatch, current: ContactMethod, caller: Caller) -> dict[str, Any]:
    """The store changes a PATCH body stands for, checked by the CLI's rules."""
    given = body.given()
    given.pop("region", None)
    given.pop("allow_landline", None)
    changes: dict[str, Any] = {}
    value = given.pop("value", None)
    if value is not None:
        changes.update(
            edits.value_change(
                current,
                value,
                body.region,
                caller.ctx.settings.target_policy(),
                allow_landline=body.allow_landline,
            )
        )
    webhook_keys = ("webhook_method", "webhook_headers", "webhook_query", "webhook_body")
    webhook = {k: given.pop(k) for k in webhook_keys if k in given}
    if webhook:
        cleared = {k: v for k, v in webhook.items() if v is None}
        changes.update(
            edits.checked_webhook(
                current.transport, **{k.removeprefix("webhook_"): v for k, v in webhook.items()}
            )
        )
        for key in cleared:
            changes[key] = {} if key in ("webhook_headers", "webhook_query") else None
    for key in ("metadata", "tags", "is_primary", "verified", "disabled", "muted"):
        if key in given and given[key] is None:
            given[key] = {"metadata": {}, "tags": []}.get(key, False)
    if "notify_after_seconds" in given and given["notify_after_seconds"] is None:
        given["notify_after_seconds"] = 0
    for key in [k for k in given if k.startswith("suppress_")]:
        given[key] = bool(given[key])
    if "tags" in given:
        given["tags"] = list(dict.fromkeys(given["tags"]))
    return {**given, **changes}


@router.patch("/{method_id}", response_model=ContactMethod, responses=SINGLE)
async def patch_method(
    method_id: str, body: ContactMethodPatch, caller: Writer, if_match: IfMatch = None
) -> JSONResponse:
    """Change the fields sent; a new value is checked like a new method's and resets
    ``verified``; 412 if ``If-Match`` is stale."""
    store = caller.ctx.store
    current = await store.get_contact_method(method_id)
    changes = changes_of(body, current, caller)
    method = await store.update_contact_method(
        method_id, changes, actor=caller.name, expect=matches(if_match)
    )
    return resource(method)


@router.delete("/{method_id}", status_code=204, response_class=Response)
async def delete_method(method_id: str, caller: Writer, if_match: IfMatch = None) -> Response:
    """Delete a method; 412 if ``If-Match`` is stale."""
    await caller.ctx.store.delete_contact_method(
        method_id, actor=caller.name, expect=matches(if_match)
    )
    return Response(status_code=204)


@router.post("/{method_id}/mute", response_model=ContactMethod)
async def mute(method_id: str, caller: Writer, body: MuteBody | None = None) -> JSONResponse:
    """Mute until cleared, or until ``until`` (which must be in the future)."""
    until = body.until if body else None
    if until is not None and until <= datetime.now(UTC):
        raise InvalidValue("until", "", "is not in the future; a mute that ended changes nothing")
    changes = {"muted": until is None, "mute_until": until}
    return resource(
        await caller.ctx.store.update_contact_method(method_id, changes, actor=caller.name)
    )


@router.post("/{method_id}/unmute", response_model=ContactMethod)
async def unmute(method_id: str, caller: Writer) -> JSONResponse:
    """Clear both the flag and any mute-until."""
    changes = {"muted": False, "mute_until": None}
    return resource(
        await caller.ctx.store.update_contact_method(method_id, changes, actor=caller.name)
    )


@router.post("/{method_id}/verify", status_code=202, response_model=VerificationSent)
async def verify(method_id: str, caller: Writer) -> VerificationSent:
    """Send a short-lived code to the method itself, as ``router contacts verify`` does."""
    ctx = caller.ctx
    method = await ctx.store.get_contact_method(method_id)
    problem = webhook_problem(method, ctx.settings.target_policy())
    if problem:
        raise Problem(
            409, f"This webhook is one the router will not call ({problem}); change its URL."
        )
    code = verification.new_code()
    method, expires_at = await ctx.store.start_verification(
        method_id,
        verification.hash_code(method_id, code),
        ctx.settings.verification_code_ttl_seconds,
    )
    job = verification.verification_job(method, code, expires_at, datetime.now(UTC))
    await ctx.publish(ctx.settings.delivery_topic(method.transport), job, method.id)
    return VerificationSent(id=method.id, expires_at=expires_at)


@router.post("/{method_id}/confirm", response_model=ContactMethod)
async def confirm(method_id: str, body: ConfirmBody, caller: Writer) -> JSONResponse:
    """Mark the method verified when the code is right and fresh (422 if not)."""
    ctx = caller.ctx
    method = await ctx.store.confirm_verification(
        method_id,
        lambda stored: verification.code_matches(method_id, body.code, stored),
        ctx.settings.verification_max_attempts,
    )
    await ctx.store.audit(caller.name, "verify", "contact_method", method.id, {"verified": True})
    return resource(method)
