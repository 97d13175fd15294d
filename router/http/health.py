"""Health, readiness and metrics on one HTTP port, served inside the worker process.

- ``GET /healthz``: 200 while the process and its event loop answer (liveness).
- ``GET /readyz``: 200 when the broker answers, PostgreSQL answers, and the
  worker owns partitions of ``alerts`` (or its group is still joining) and none
  of them is paused as undecodable; else 503 with a JSON body naming each
  failed check.
- ``GET /metrics``: Prometheus text format (:mod:`router.metrics`).

An ASGI app served by uvicorn on ``ROUTER_HTTP_PORT`` (0 turns it off). The
worker owns the process's signals; uvicorn's are switched off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import h11
import structlog
import uvicorn
from prometheus_client import make_asgi_app
from uvicorn.protocols.http.h11_impl import H11Protocol

from router.metrics import REGISTRY

log = structlog.get_logger("router.health")

Check = Callable[[], Awaitable[str | None]]  # None when fine, else why not


@dataclass
class Readiness:
    """Named checks; ready when every one passes."""

    checks: dict[str, Check] = field(default_factory=dict)

    async def report(self) -> tuple[bool, dict[str, str]]:
        """Whether ready, and the failed checks with their reasons."""
        failed: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                problem = await asyncio.wait_for(check(), timeout=2.0)
            except Exception as error:  # a check that cannot run is a failed check
                problem = f"{type(error).__name__}: {error}"
            if problem:
                failed[name] = problem
        return not failed, failed


def _json(status: int, body: dict[str, Any]) -> tuple[int, bytes]:
    return status, json.dumps(body).encode()


def create_http_app(readiness: Readiness) -> Callable[..., Awaitable[None]]:
    """The ASGI app for ``/healthz``, ``/readyz`` and ``/metrics``."""
    metrics = make_asgi_app(registry=REGISTRY)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/metrics":
            await metrics(scope, receive, send)
            return
        if path == "/healthz":
            status, body = _json(200, {"status": "alive"})
        elif path == "/readyz":
            ready, failed = await readiness.report()
            status, body = (
                _json(200, {"status": "ready"})
                if ready
                else _json(503, {"status": "not ready", "failed": failed})
            )
        else:
            status, body = _json(404, {"error": f"no such endpoint: {path}"})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the worker decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _with_header_timeout(seconds: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol that closes a connection whose request line and
    headers have not all arrived within ``seconds`` of the first byte (or of the
    connection): uvicorn itself waits for them forever, so a few slow clients
    could hold every connection open (slowloris)."""

    class HeaderTimeout(H11Protocol):
        _head_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head_deadline = self.loop.call_later(seconds, self._head_overdue)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            waiting = self.conn.their_state is h11.IDLE
            if waiting and self._head_deadline is None:
                self._head_deadline = self.loop.call_later(seconds, self._head_overdue)
            elif not waiting and self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
            super().connection_lost(exc)

        def _head_overdue(self) -> None:
            self._head_deadline = None
            if self.conn.their_state is h11.IDLE:  # still no complete request head
                log.warning("http_header_timeout", timeout_seconds=seconds)
                self.transport.close()

    return HeaderTimeout


class HttpServer:
    """The endpoints on ``port``, started and stopped with the worker."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        host: str,
        port: int,
        endpoints: Sequence[str] = ("/healthz", "/readyz", "/metrics"),
        header_timeout_seconds: float = 10.0,
    ) -> None:
        self._endpoints = list(endpoints)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=_with_header_timeout(header_timeout_seconds),
            lifespan="off",
            log_config=None,
            access_log=False,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self.port = port

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The serving task, once started."""
        return self._task

    async def start(self) -> None:
        """Serve in the background; return once listening."""
        self._task = asyncio.create_task(self._server.serve(), name="router-http")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raise why it could not start (port in use...)
            await asyncio.sleep(0.01)
        log.info("http_listening", port=self.port, endpoints=self._endpoints)

    async def stop(self) -> None:
        """Stop serving (in-flight requests finish)."""
        if self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=5)
