"""Watched background tasks: one that dies is reported once and stops the worker."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from router.tasks import BackgroundTaskFailed, Watched


async def test_a_task_that_raises_is_logged_once_with_its_traceback_and_fails_the_worker() -> None:
    watched = Watched()

    async def held_pages() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("claim query broke")

    async def janitor() -> None:
        await watched.stopping.wait()

    with capture_logs() as logs:
        watched.start("router-held-pages", held_pages())
        watched.start("router-janitor", janitor())
        await asyncio.wait_for(watched.failed.wait(), timeout=2)
        await watched.stop(grace_seconds=1)
    failures = [e for e in logs if e["event"] == "background_task_failed"]
    assert len(failures) == 1
    assert failures[0]["task"] == "router-held-pages" and failures[0]["how"] == "raised"
    assert isinstance(failures[0]["exc_info"], RuntimeError)
    assert isinstance(watched.failure, BackgroundTaskFailed)
    assert "router-held-pages raised" in str(watched.failure)
    assert watched.failure.exit_code != 0


async def test_a_task_that_returns_early_counts_as_a_failure_too() -> None:
    watched = Watched()

    async def returns() -> None:
        return None

    watched.start("router-failovers", returns())
    await asyncio.wait_for(watched.failed.wait(), timeout=2)
    assert watched.failure is not None and "router-failovers returned" in str(watched.failure)


async def test_tasks_that_end_because_the_worker_stops_are_not_failures() -> None:
    watched = Watched()

    async def loop() -> None:
        await watched.stopping.wait()

    async def stubborn() -> None:
        await asyncio.sleep(60)

    watched.start("router-janitor", loop())
    stuck = watched.start("router-held-pages", stubborn())
    await watched.stop(grace_seconds=0.1)
    assert not watched.failed.is_set() and watched.failure is None
    assert stuck.cancelled(), "a task that outlives the grace period is cancelled"


@pytest.mark.parametrize("name", ["router-http", "router-directory-listener"])
async def test_a_task_started_elsewhere_can_be_watched(name: str) -> None:
    watched = Watched()

    async def serve() -> None:
        raise OSError("address in use")

    watched.watch(asyncio.create_task(serve(), name=name))
    await asyncio.wait_for(watched.failed.wait(), timeout=2)
    assert watched.failure is not None and name in str(watched.failure)


async def test_stop_leaves_a_watched_task_to_its_owner() -> None:
    watched = Watched()

    async def server() -> None:
        await asyncio.sleep(60)

    task = asyncio.create_task(server(), name="router-http")
    watched.watch(task)
    await watched.stop(grace_seconds=0.1)
    assert not task.done(), "the HTTP server stops itself, after the worker's own tasks"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not watched.failed.is_set()
