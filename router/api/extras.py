"""The rest of the directory over HTTP: ``/v1/opt-outs``, and read-only
``/v1/trail/{event_id}``, ``/v1/held``, ``/v1/audit``, ``/v1/schedules`` and
``/v1/schedules/{schedule_id}/on-call``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from router.api.bodies import NewOptOut, OptOut
from router.api.context import Caller, idempotent, reader, writer
from router.api.problems import Problem
from router.delivery.trail import story
from router.directory import addresses
from router.routing.rules import parse_duration
from router.schedules.oncall import on_call_json, who
from router.schedules.store import INSTANT

router = APIRouter(prefix="/v1")

Reader = Annotated[Caller, Depends(reader)]
Writer = Annotated[Caller, Depends(writer)]


@router.get("/opt-outs", response_model=list[OptOut], tags=["opt-outs"])
async def list_opt_outs(caller: Reader) -> list[OptOut]:
    """Every address on the opt-out list."""
    found = sorted(await caller.ctx.store.list_opt_outs())
    return [OptOut(transport=t, address=a) for t, a in found]


@router.post("/opt-outs", status_code=201, response_model=OptOut, tags=["opt-outs"])
async def add_opt_out(body: NewOptOut, request: Request, caller: Writer) -> JSONResponse:
    """Put an address on the list (normalized as ``router optout add`` does)."""
    address = addresses.normalize(body.transport, body.address, body.region)

    async def make() -> JSONResponse:
        await caller.ctx.store.add_opt_out(body.transport, address, "api", caller.name)
        return JSONResponse({"transport": body.transport, "address": address}, 201)

    return await idempotent(request, caller, make)


@router.delete("/opt-outs/{address}", status_code=204, response_class=Response, tags=["opt-outs"])
async def remove_opt_out(address: str, caller: Writer) -> Response:
    """Take an address (an E.164 number or a mailbox) off the list; 404 if not on it."""
    transport: Literal["email", "sms"] = "email" if "@" in address else "sms"
    try:
        normalized = addresses.normalize(transport, address)
    except Exception:  # not an address at all: it cannot be on the list
        normalized = address
    if not await caller.ctx.store.remove_opt_out(transport, normalized, caller.name):
        raise Problem(404, "That address is not on the opt-out list.")
    return Response(status_code=204)


@router.get("/trail/{event_id}", tags=["read-only"])
async def trail(event_id: str, caller: Reader) -> list[dict[str, Any]]:
    """One page's story: its event, decisions, jobs and statuses (as ``router trail --json``)."""
    event, jobs, rows = await caller.ctx.store.trail(event_id)
    lines = story(event, jobs, rows)
    if not lines:
        raise Problem(
            404,
            "Nothing on the trail for that event (it may be older than "
            "ROUTER_TRAIL_RETENTION_SECONDS).",
        )
    found: list[dict[str, Any]] = [json.loads(line.as_json()) for line in lines]
    return found


@router.get("/held", tags=["read-only"])
async def held(caller: Reader, user_id: str | None = None) -> list[dict[str, Any]]:
    """Pages waiting (quiet hours, throttling), as ``router held list --json``."""
    return [page.summary() for page in await caller.ctx.store.list_held(user_id)]


@router.get("/audit", tags=["read-only"])
async def audit(
    caller: Reader,
    entity: Annotated[str | None, Query(pattern="^(user|contact_method|opt_out)$")] = None,
    id: str | None = None,
    since: Annotated[str | None, Query(description='"24h", "30m", "7d"')] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Directory changes, newest first: who, what, and the changed fields (masked)."""
    start = None
    if since:
        try:
            start = datetime.now(UTC) - timedelta(seconds=parse_duration(since))
        except Exception:
            raise Problem(
                422,
                'since must be a duration such as "24h" or "30m".',
                [{"parameter": "since", "pointer": "#/query/since", "detail": "not a duration"}],
            ) from None
    return await caller.ctx.store.list_audit(entity, id, start, limit)


@router.get("/schedules", tags=["read-only"])
async def schedules(caller: Reader) -> list[dict[str, Any]]:
    """Every schedule's id, name and time zone, by id (as ``router schedules``)."""
    return [
        {"id": s.schedule_id, "name": s.name, "timezone": s.timezone}
        for s in await caller.ctx.store.list_schedules()
    ]


@router.get("/schedules/{schedule_id}/on-call", tags=["read-only"])
async def on_call(
    schedule_id: str,
    caller: Reader,
    at: Annotated[datetime | None, Query(description="RFC 3339 with offset; default now")] = None,
) -> dict[str, Any]:
    """Who is on call at ``at`` and why (as ``router schedules who --json``); 404 for
    a schedule that does not exist."""
    when = at if at is not None else datetime.now(UTC)
    if when.tzinfo is None:
        raise Problem(
            422,
            "at must carry an offset, e.g. 2026-12-01T09:00:00+01:00.",
            [{"parameter": "at", "pointer": "#/query/at", "detail": "no offset"}],
        )
    schedule = await caller.ctx.store.schedule(schedule_id, when, when + INSTANT)
    return {
        "schedule_id": schedule_id,
        "at": when.isoformat(),
        "on_call": on_call_json(who(schedule, when)),
    }
