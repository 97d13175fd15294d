"""Errors as RFC 9457 ``application/problem+json``: ``type``, ``title``, ``status``,
``detail`` and, for bad input, ``errors`` with a JSON pointer per field.

Nothing a client or the log sees carries a traceback, a token, or a whole
address: details pass through :func:`scrub`, and an unexpected exception is
logged by its type only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from router.directory import addresses
from router.errors import (
    Conflict,
    InvalidValue,
    NotFound,
    PreconditionFailed,
    RouterError,
    StoreUnavailable,
    VerificationRefused,
)

log = structlog.get_logger("router.api")

PROBLEM = "application/problem+json"
_ADDRESS = re.compile(
    r"[a-z][a-z0-9+.-]*://[^\s'\"),]+|[^\s'\"(),=]+@[^\s'\"(),]+|\+?\d[\d ()-]{6,}\d", re.I
)

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


def scrub(text: str) -> str:
    """``text`` with every address-like part (URL, mailbox, phone number) masked."""
    return _ADDRESS.sub(lambda m: addresses.mask(None, m.group(0).strip()), text)


class Problem(Exception):
    """An answer other than success, raised anywhere in a request."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: Sequence[dict[str, str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = headers or {}


def problem_response(
    status: int,
    detail: str,
    errors: Sequence[dict[str, str]] = (),
    headers: dict[str, str] | None = None,
    *,
    scrubbed: bool = True,
) -> JSONResponse:
    """The problem document for ``status`` (its texts passed through :func:`scrub`
    unless ``scrubbed`` is False: the rules' own messages, which never echo an address)."""
    clean = scrub if scrubbed else str
    title = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": f"https://router.invalid/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": clean(detail),
    }
    if errors:
        body["errors"] = [{**e, "detail": clean(e["detail"])} for e in errors]
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def pointer(field: str) -> str:
    """A JSON pointer for a field name as the rules name it (``--header`` -> /webhook_headers)."""
    name = field.strip().lstrip("-").replace("-", "_").split(",")[0].strip()
    name = {"header": "webhook_headers", "query": "webhook_query", "body": "webhook_body"}.get(
        name, name
    )
    return "/" + name.replace("~", "~0").replace("/", "~1")


def status_of(error: RouterError) -> int:
    """The HTTP status for a refusal of the store or the rules."""
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, PreconditionFailed):
        return 412
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, InvalidValue | VerificationRefused):
        return 422
    if isinstance(error, StoreUnavailable):
        return 503
    return 400


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem document."""

    async def on_problem(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, Problem)
        return problem_response(error.status, error.detail, error.errors, error.headers)

    async def on_router_error(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RouterError)
        if isinstance(error, InvalidValue):
            detail = f"{error.field} {error.expected}"
            return problem_response(
                422, detail, [{"pointer": pointer(error.field), "detail": detail}], scrubbed=False
            )
        status = status_of(error)
        return problem_response(
            status, str(error), headers={"Retry-After": "5"} if status == 503 else None
        )

    async def on_invalid(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        errors = []
        for item in error.errors():
            where, *path = item.get("loc", ()) or ("body",)
            steps = [str(p) for p in path]
            ref = "/" + "/".join(s.replace("~", "~0").replace("/", "~1") for s in steps)
            entry = {"detail": str(item.get("msg", "is not valid"))}
            if where == "body":
                entry["pointer"] = ref if steps else ""
            else:
                entry["parameter"] = steps[0] if steps else str(where)
                entry["pointer"] = f"#/{where}{ref}"
            errors.append(entry)
        return problem_response(422, "The request has invalid fields; see errors.", errors)

    async def on_http(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        return problem_response(
            error.status_code, str(error.detail), headers=dict(error.headers or {})
        )

    async def on_unexpected(_request: Request, _error: Exception) -> JSONResponse:
        return problem_response(500, "The service failed; the error is logged.")

    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RouterError, on_router_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http)


async def _send_problem(send: Callable[[Any], Awaitable[None]], response: JSONResponse) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body})


def guard(app: ASGIApp, max_bytes: int) -> ASGIApp:
    """``app`` behind a size limit (413 over ``max_bytes``, the body read before the app
    sees it) and a last resort for unexpected errors (500, logged by type only)."""

    async def guarded(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        too_large = problem_response(413, f"The body is larger than {max_bytes} bytes.")
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get("content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > max_bytes:
            await _send_problem(send, too_large)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                await _send_problem(send, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False
        started = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, replay, tracking_send)
        except Exception as error:  # the last resort: no traceback to the client or the log
            log.error(
                "api_unexpected_error", error_type=type(error).__name__, path=scrub(scope["path"])
            )
            if not started:
                await _send_problem(
                    send, problem_response(500, "The service failed; the error is logged.")
                )

    return guarded


def dumps(body: Any) -> bytes:
    """JSON as the API sends it."""
    return json.dumps(body, separators=(",", ":")).encode()
