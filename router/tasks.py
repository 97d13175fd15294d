"""Background tasks that are named and watched.

A worker runs a few loops beside its consumer: the janitor, held-page delivery,
the failover watchers, the directory cache's listener, the HTTP server. Each
one is meant to run until the worker stops; one that ends early, or raises,
leaves a worker that looks alive but no longer delivers held pages or answers
probes. :class:`Watched` names every such task, logs the first one that ends
unexpectedly (once, with its traceback) and sets :attr:`Watched.failed`, which
``router run`` waits on beside SIGTERM: the worker then drains and exits with
:class:`BackgroundTaskFailed`'s status, so the orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

from router.errors import RouterError

log = structlog.get_logger("router.tasks")


class BackgroundTaskFailed(RouterError):
    """A background task of the worker ended while the worker was running."""

    exit_code = 4


class Watched:
    """Named background tasks, stopped together through :attr:`stopping`."""

    def __init__(self) -> None:
        #: Set when the worker stops; every task's loop ends when it is set.
        self.stopping = asyncio.Event()
        #: Set when a task ended before :attr:`stopping` was set.
        self.failed = asyncio.Event()
        self.failure: BackgroundTaskFailed | None = None
        self._owned: list[asyncio.Task[Any]] = []

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as the task ``name``, watched; :meth:`stop` ends it."""
        task = asyncio.create_task(coro, name=name)
        self._owned.append(task)
        self.watch(task)
        return task

    def watch(self, task: asyncio.Task[Any]) -> None:
        """Watch a task something else started and stops (a server's or a listener's
        own task): its end is reported, but :meth:`stop` leaves it to its owner."""
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        if self.stopping.is_set() or self.failed.is_set():
            return  # stopping on purpose, or already reported
        error = None if task.cancelled() else task.exception()
        how = "was cancelled" if task.cancelled() else "raised" if error else "returned"
        log.error(
            "background_task_failed",
            task=task.get_name(),
            how=how,
            exc_info=error if error is not None else None,
        )
        self.failure = BackgroundTaskFailed(
            f"the background task {task.get_name()} {how} while the worker was running"
            + (f" ({type(error).__name__}: {error})" if error is not None else "")
            + "; the worker stopped so that it can be restarted. Its log has the traceback."
        )
        self.failed.set()

    async def stop(self, grace_seconds: float) -> None:
        """Set :attr:`stopping`, give each task this started ``grace_seconds`` to end,
        then cancel it. Watched tasks of other owners are stopped by them."""
        self.stopping.set()
        for task in self._owned:
            if task.done():
                continue
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=grace_seconds)
            except TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                log.warning("background_task_stop_timeout", task=task.get_name())
            except Exception as error:  # it must not keep the process from stopping
                log.warning("background_task_stop_failed", task=task.get_name(), error=repr(error))
