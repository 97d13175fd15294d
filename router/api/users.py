"""``/v1/users``: list, create, read, change and delete users."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from router.api.bodies import NewUser, UserPage, UserPatch
from router.api.context import Caller, idempotent, matches, reader, resource, writer
from router.api.problems import Problem
from router.directory.models import User

router = APIRouter(prefix="/v1/users", tags=["users"])

IfMatch = Annotated[str | None, Header(description="An ETag from a GET; 412 if stale.")]
Reader = Annotated[Caller, Depends(reader)]
Writer = Annotated[Caller, Depends(writer)]
SINGLE: dict[int | str, dict[str, Any]] = {
    200: {"headers": {"ETag": {"schema": {"type": "string"}}}}
}


def _cursor(user_id: str) -> str:
    return base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")


def _after(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:
        raise Problem(
            422,
            "cursor is not one this service gave; start again without it.",
            [{"parameter": "cursor", "pointer": "#/query/cursor", "detail": "unknown cursor"}],
        ) from None


@router.get("", response_model=UserPage)
async def list_users(
    caller: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    search: Annotated[str | None, Query(max_length=256)] = None,
    external_id: str | None = None,
) -> UserPage:
    """Users by id, a page at a time; ``search`` matches the id or the name;
    ``external_id`` finds the one user with that id in the system it is synced from."""
    if external_id is not None:
        found = await caller.ctx.store.user_by_external_id(external_id)
        return UserPage(items=[found] if found else [], next_cursor=None)
    after = _after(cursor) if cursor else None
    users = await caller.ctx.store.list_users(after=after, search=search, limit=limit + 1)
    more, users = len(users) > limit, users[:limit]
    return UserPage(items=users, next_cursor=_cursor(users[-1].id) if more else None)


@router.post("", status_code=201, response_model=User)
async def create_user(body: NewUser, request: Request, caller: Writer) -> JSONResponse:
    """Create a user; 409 if the id is taken."""

    async def make() -> JSONResponse:
        user = await caller.ctx.store.create_user(body.model_dump(), actor=caller.name)
        return resource(user, 201)

    return await idempotent(request, caller, make)


@router.get("/{user_id}", response_model=User, responses=SINGLE)
async def get_user(user_id: str, caller: Reader) -> JSONResponse:
    """One user, with its ETag."""
    return resource(await caller.ctx.store.get_user(user_id))


@router.patch("/{user_id}", response_model=User, responses=SINGLE)
async def patch_user(
    user_id: str, body: UserPatch, caller: Writer, if_match: IfMatch = None
) -> JSONResponse:
    """Change the fields sent; 412 if ``If-Match`` is stale."""
    changes = body.given()
    for key in ("timezone", "quiet_bypass", "quiet_action", "channel_order", "delivery_mode"):
        if key in changes and changes[key] is None:
            raise Problem(
                422,
                f"{key} cannot be null.",
                [{"pointer": f"/{key}", "detail": "cannot be null"}],
            )
    user = await caller.ctx.store.update_user(
        user_id, changes, actor=caller.name, expect=matches(if_match)
    )
    return resource(user)


@router.delete("/{user_id}", status_code=204, response_class=Response)
async def delete_user(
    user_id: str, caller: Writer, cascade: bool = False, if_match: IfMatch = None
) -> Response:
    """Delete a user; 409 while it has contact methods or shifts, unless ``cascade=true``."""
    await caller.ctx.store.delete_user(
        user_id, cascade=cascade, actor=caller.name, expect=matches(if_match)
    )
    return Response(status_code=204)
