"""``router api``'s app and process: the FastAPI app with its routes, problem
answers and guard, and :func:`run_api` that serves it until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from router import logging as router_logging
from router.api import batches, extras, methods, problems, users
from router.api.bodies import ProblemDetails
from router.api.context import ApiContext
from router.api.problems import PROBLEM, ASGIApp, Problem
from router.db.api_bulk import BulkApiStore
from router.errors import ConfigError
from router.http.access import RateLimiter
from router.http.health import HttpServer, Readiness
from router.metrics import REGISTRY
from router.settings import Settings

log = structlog.get_logger("router.api")

TITLE = "router api"
DESCRIPTION = (
    "The notification router's directory over HTTP: users, contact methods, "
    "opt-outs, and read-only trail, held pages and audit log. Bearer tokens from "
    "ROUTER_API_READ_TOKENS / ROUTER_API_WRITE_TOKENS; errors are RFC 9457 problems."
)


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
    }


PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: _problem("The database refused the request."),
    401: _problem("No valid bearer token."),
    403: _problem("A read token on a write."),
    404: _problem("No such record."),
    409: _problem("The write breaks a uniqueness rule, or the record has dependents."),
    412: _problem("If-Match names a version that is no longer current."),
    413: _problem("The body is larger than ROUTER_API_MAX_BYTES."),
    422: _problem("Invalid input; errors has a JSON pointer per bad field."),
    429: _problem("Over the token's rate; see Retry-After."),
    503: _problem("PostgreSQL or the broker is unavailable; retry."),
}


def create_api(ctx: ApiContext | None, readiness: Readiness | None = None) -> FastAPI:
    """The FastAPI app (``ctx`` None: only to print its OpenAPI document)."""
    app = FastAPI(
        title=TITLE,
        version="1",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        responses=PROBLEMS,
    )
    app.state.ctx = ctx
    # Referenced by every error response: FastAPI only adds the models routes return.
    original = app.openapi
    problem_schema = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")

    def with_problem() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        doc = original()  # FastAPI caches it; completed the first time
        if fresh:
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(problem_schema.get("$defs", {}))
            schemas["ProblemDetails"] = {k: v for k, v in problem_schema.items() if k != "$defs"}
        return doc

    app.openapi = with_problem  # type: ignore[method-assign]
    problems.install(app)
    for room in (users.router, batches.router, methods.router, extras.router):
        app.include_router(room)
    checks = readiness or Readiness()

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ready, failed = await checks.report()
        body: dict[str, Any] = {"status": "ready"} if ready else {"status": "not ready"}
        if failed:
            body["failed"] = failed
        return JSONResponse(body, 200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def no_store(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document, as ``GET /openapi.json`` serves it."""
    return create_api(None).openapi()


class _Publisher:
    """A producer started on first use (verification codes only)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: Any = None

    async def __call__(self, topic: str, job: BaseModel, key: str) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        from router.kafka.security import client_options

        try:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **client_options(self._settings),
                    acks="all",
                    enable_idempotence=self._settings.kafka_enable_idempotence,
                )
                await producer.start()
                self._producer = producer
            await self._producer.send_and_wait(
                topic, job.model_dump_json().encode(), key=key.encode()
            )
        except KafkaError as error:
            log.warning("api_publish_failed", topic=topic, error_type=type(error).__name__)
            raise Problem(
                503,
                "The broker did not take the verification code; retry.",
                headers={"Retry-After": "5"},
            ) from None

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


async def run_api(settings: Settings) -> None:
    """``router api``: serve the directory until SIGINT or SIGTERM."""
    router_logging.configure(settings.log_format, settings.log_level)
    tokens = settings.api_tokens()
    if not tokens:
        raise ConfigError(
            "router api needs at least one bearer token: set ROUTER_API_WRITE_TOKENS or "
            "ROUTER_API_READ_TOKENS (comma-separated, several while rotating), or their "
            "..._FILE forms."
        )
    store = await BulkApiStore.connect(
        settings.database_url.get_secret_value(),
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
    )
    publisher = _Publisher(settings)
    try:
        await store.check_schema()
        ctx = ApiContext(
            store,
            settings,
            tokens,
            RateLimiter(settings.api_rate_per_second, settings.api_burst),
            publisher,
        )

        async def database() -> str | None:
            return None if await store.ping() else "PostgreSQL does not answer"

        app = create_api(ctx, Readiness({"database": database}))
        guarded: ASGIApp = problems.guard(app, settings.api_max_bytes)
        server = HttpServer(
            guarded,
            settings.api_host,
            settings.api_port,
            ["/v1/users", "/v1/contact-methods", "/v1/opt-outs", "/openapi.json", "/healthz"],
            header_timeout_seconds=settings.api_header_timeout_seconds,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await server.start()
        log.info("api_listening", port=settings.api_port, tokens=len(tokens))
        try:
            await stop.wait()
        finally:
            await server.stop()
            log.info("api_stopped")
    finally:
        await publisher.stop()
        await store.close()
