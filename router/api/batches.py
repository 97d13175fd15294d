"""Many contact methods per request: ``POST /v1/contact-methods/batch`` (all or
nothing, or ``?partial=true`` item by item), ``POST /v1/contact-methods/batch-delete``,
and ``PUT /v1/users/{user_id}/contact-methods`` (replace a user's whole set)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from router.api.bodies import (
    Batch,
    BatchAnswer,
    BatchDelete,
    Deleted,
    SyncAnswer,
    SyncedContactMethod,
)
from router.api.context import Caller, idempotent, writer
from router.api.methods import new_method
from router.api.problems import Problem, pointer, scrub, status_of
from router.directory import writes
from router.errors import InvalidValue, RouterError

router = APIRouter(prefix="/v1", tags=["contact methods"])

Writer = Annotated[Caller, Depends(writer)]


def _problem(error: RouterError, index: int | None = None) -> dict[str, Any]:
    status = status_of(error)
    where = f"/items/{index}" if index is not None else ""
    if isinstance(error, InvalidValue):
        detail = f"{error.field} {error.expected}"
        errors = [{"pointer": where + pointer(error.field), "detail": detail}]
    else:
        detail, errors = str(error), []
    return {"status": status, "detail": detail, "errors": errors}


@router.post(
    "/contact-methods/batch",
    status_code=201,
    response_model=BatchAnswer,
    responses={200: {"model": BatchAnswer, "description": "partial=true: one result per item."}},
)
async def create_batch(
    body: Batch, request: Request, caller: Writer, partial: bool = False
) -> JSONResponse:
    """Create many methods in one transaction: all or nothing (the first refusal is
    the answer, its pointer naming the item), or with ``partial=true`` each item on
    its own, the results in order."""
    items: list[tuple[writes.NewContactMethod, str | None] | RouterError] = []
    for item in body.items:
        try:
            items.append(new_method(item, item.user_id, caller))
        except RouterError as error:
            items.append(error)

    async def make() -> JSONResponse:
        try:
            results = await caller.ctx.store.create_methods(items, caller.name, partial=partial)
        except RouterError as error:
            found = _problem(error, getattr(error, "index", None))
            raise Problem(
                found["status"],
                f"Item {getattr(error, 'index', '?')}: {found['detail']} Nothing was created.",
                found["errors"],
            ) from None
        if not partial:
            created = [r.model_dump(mode="json") for r in results if not isinstance(r, Exception)]
            return JSONResponse({"items": created}, 201)
        answers: list[dict[str, Any]] = []
        for index, result in enumerate(results):
            if isinstance(result, RouterError):
                found = _problem(result, index)
                answers.append({"status": found["status"], "problem": _document(found)})
            else:
                answers.append({"status": 201, "item": result.model_dump(mode="json")})
        return JSONResponse({"results": answers}, 200)

    return await idempotent(request, caller, make)


def _document(found: dict[str, Any]) -> dict[str, Any]:
    title = HTTPStatus(found["status"]).phrase
    return {
        "type": f"https://router.invalid/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": found["status"],
        "detail": scrub(found["detail"]),
        "errors": found["errors"] or None,
    }


@router.post("/contact-methods/batch-delete", response_model=Deleted)
async def delete_batch(body: BatchDelete, caller: Writer) -> Deleted:
    """Delete every method named in one transaction; 404 (nothing deleted) if one
    does not exist."""
    return Deleted(deleted=await caller.ctx.store.delete_methods(body.ids, caller.name))


@router.put("/users/{user_id}/contact-methods", response_model=SyncAnswer, tags=["users"])
async def sync_methods(user_id: str, body: list[SyncedContactMethod], caller: Writer) -> SyncAnswer:
    """Replace the user's whole set in one transaction: a method matched by
    ``external_id``, else by transport and value, keeps its id, verification and
    mute state; new ones are created, missing ones deleted. Idempotent."""
    wanted: list[tuple[writes.NewContactMethod, str | None]] = []
    errors: list[dict[str, str]] = []
    for index, item in enumerate(body):
        try:
            wanted.append(new_method(item, user_id, caller))
        except InvalidValue as error:
            detail = f"{error.field} {error.expected}"
            errors.append({"pointer": f"/{index}" + pointer(error.field), "detail": detail})
    keys = [(n.transport, n.value) for n, _ in wanted]
    if len(set(keys)) != len(keys):
        errors.append({"pointer": "", "detail": "two items have the same transport and value"})
    if errors:
        raise Problem(422, "The set has invalid items; nothing was changed.", errors)
    result = await caller.ctx.store.sync_methods(user_id, wanted, caller.name)
    return SyncAnswer(
        created=result.created,
        updated=result.updated,
        deleted=result.deleted,
        unchanged=result.unchanged,
    )
