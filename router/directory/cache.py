"""The directory in process: users, their methods and their addresses' opt-out state.

Reading the directory for every batch costs a transaction of four round trips;
a pager's users change rarely. :class:`DirectoryCache` keeps what batches read,
bounded (least recently used first out) and each entry for at most a TTL.
PostgreSQL announces every change on the ``router_directory`` channel (triggers
written by migration 0004, so the CLI, a bulk import, an opt-out message and a
hand-written ``UPDATE`` all do), and :class:`CachedDirectory` drops what a
notification names.

The cache is used only while the notification connection is up: from the
moment it is lost (and until it is back, listening, with the cache emptied)
every batch reads the directory as if there were no cache. A read that overlaps
a notification is used for its batch but not kept, so an entry is never older
than the last change it could have missed.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

import structlog

from router import metrics
from router.db.store import Store
from router.delivery.trail import JobRow, PageState, Trail, TrailRow
from router.directory.lru import Change, DirectoryCache, parse_change
from router.directory.models import Directory
from router.directory.rows import Entry, entries_from, merge
from router.directory.store import ScheduleLookup
from router.held.digest import HeldPage
from router.routing.rules import Limits, RateDecision, Send

__all__ = ["CachedDirectory", "Change", "DirectoryCache", "Entry", "parse_change"]

log = structlog.get_logger("router.cache")


class Listener(Protocol):
    """A live subscription to directory changes (see ``PgStore.listen``)."""

    async def close(self) -> None: ...

    def is_alive(self) -> bool: ...

    async def check(self) -> bool: ...


class ListeningStore(Store, Protocol):
    async def listen(
        self, on_change: Callable[[str], None], on_lost: Callable[[], None]
    ) -> Listener: ...

    async def user_ids(self, limit: int) -> list[str] | None: ...


#: Users read per transaction while the whole directory is loaded.
PRELOAD_CHUNK = 500


class CachedDirectory:
    """A :class:`Store` whose ``directory_for`` answers from the cache when it may.

    Every other operation goes to the store underneath unchanged.
    """

    def __init__(
        self,
        store: ListeningStore,
        cache: DirectoryCache,
        *,
        check_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        preload_users: int = 0,
        preload_wait_seconds: float = 120.0,
        compile_entry: Callable[[Entry], None] | None = None,
    ) -> None:
        self._store = store
        # What routing keeps of each entry of a directory read whole, made as it is read.
        self._compile_entry = compile_entry
        self._cache = cache
        self._bounded = (cache.max_users, cache.ttl_seconds)
        self._preload_users = preload_users
        self._preload_wait = preload_wait_seconds
        self._attempted_at = 0.0
        self._first_load = asyncio.Event()
        self._clock = clock
        self._check_seconds = check_seconds
        self._listener: Listener | None = None
        self._live = False
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    # -- everything but the directory goes straight to the store ----------------

    async def routed_within(self, event_ids: Collection[str], window_seconds: float) -> set[str]:
        return await self._store.routed_within(event_ids, window_seconds)

    async def mark_routed(self, event_ids: Collection[str]) -> None:
        await self._store.mark_routed(event_ids)

    async def write_trail(self, trail: Trail) -> None:
        await self._store.write_trail(trail)

    async def record_batch(
        self, trail: Trail, routed: Collection[str], counted: Collection[str]
    ) -> None:
        await self._store.record_batch(trail, routed, counted)

    async def jobs_by_id(self, job_ids: Collection[str]) -> dict[str, JobRow]:
        return await self._store.jobs_by_id(job_ids)

    async def record_statuses(self, rows: Sequence[tuple[TrailRow, str, bool]]) -> set[str]:
        return await self._store.record_statuses(rows)

    async def pages_state(
        self, pages: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], PageState]:
        return await self._store.pages_state(pages)

    def failover_step(
        self, job: JobRow | None, decision: TrailRow
    ) -> AbstractAsyncContextManager[bool]:
        return self._store.failover_step(job, decision)

    async def reserve_sends(
        self,
        sends: Sequence[Send],
        limits: Limits,
        now: datetime,
        holds: Callable[[RateDecision], Sequence[HeldPage]] = lambda _: (),
    ) -> RateDecision:
        return await self._store.reserve_sends(sends, limits, now, holds)

    # The worker's own changes (opt-out messages) apply to its next batch at once,
    # without waiting for their notification to come back.

    async def add_opt_out(
        self, transport: str, address: str, source: str = "cli", actor: str | None = None
    ) -> None:
        await self._store.add_opt_out(transport, address, source, actor)
        self._cache.invalidate(Change(addresses=frozenset({(transport, address)})))

    async def remove_opt_out(self, transport: str, address: str, actor: str | None = None) -> bool:
        removed = await self._store.remove_opt_out(transport, address, actor)
        self._cache.invalidate(Change(addresses=frozenset({(transport, address)})))
        return removed

    async def ping(self) -> bool:
        return await self._store.ping()

    @property
    def live(self) -> bool:
        """Whether the cache is in use (its notification connection is up)."""
        return self._live

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The listening task, once started."""
        return self._task

    async def start(self) -> None:
        """Listen in the background; batches read uncached until it is up. With
        ``preload_users``, wait (at most ``preload_wait_seconds``) until the whole
        directory is read, or found larger than that."""
        self._task = asyncio.create_task(self._keep_listening(), name="router-directory-listener")
        if self._preload_users:
            done = asyncio.ensure_future(self._first_load.wait())
            await asyncio.wait(
                {done, self._task}, timeout=self._preload_wait, return_when=asyncio.FIRST_COMPLETED
            )
            done.cancel()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._stop_listening()

    async def directory_for(
        self, user_ids: Collection[str], schedules: Collection[ScheduleLookup] = ()
    ) -> Directory:
        if not self._live:
            metrics.DIRECTORY_CACHE.labels("bypass").inc(len(user_ids))
            return await self._store.directory_for(user_ids, schedules)
        hits: dict[str, Entry] = {}
        missing: list[str] = []
        for user_id in user_ids:
            entry = self._cache.get(user_id)
            if entry is None:
                missing.append(user_id)
            else:
                hits[user_id] = entry
        metrics.DIRECTORY_CACHE.labels("hit").inc(len(hits))
        metrics.DIRECTORY_CACHE.labels("miss").inc(len(missing))
        metrics.DIRECTORY_CACHE_USERS.set(len(self._cache))
        if not missing and not schedules:
            return merge(hits, None, {})
        generation = self._cache.generation
        read_at = self._clock()
        fresh = await self._store.directory_for(missing, schedules)
        # Everyone the read covered: the missing ids and whoever is on call.
        covered = {*missing, *(u for users in fresh.on_call.values() for u in users)}
        kept: dict[str, Entry] = {}
        if self._live and self._cache.generation == generation:
            kept = entries_from(fresh, covered, read_at)
            for user_id, entry in kept.items():
                self._cache.put(user_id, entry)
        return merge({k: v for k, v in hits.items() if k not in covered}, fresh, kept=kept)

    def _on_change(self, payload: str) -> None:
        self._cache.invalidate(parse_change(payload))

    def _on_lost(self) -> None:
        self._lost.set()

    async def _keep_listening(self) -> None:
        delay = 0.5
        while True:
            try:
                self._lost.clear()
                self._listener = await self._store.listen(self._on_change, self._on_lost)
                # Listening from here on: whatever was cached before may be stale.
                self._cache.clear()
                self._live = True
                delay = 0.5
                log.info("directory_cache_live")
                await self._preload()
                while not self._lost.is_set():
                    try:
                        await asyncio.wait_for(self._lost.wait(), self._check_seconds)
                    except TimeoutError:
                        if not await self._listener.check():
                            break
                        await self._preload(refresh=True)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("directory_listener_failed", error=str(error), retry_in_seconds=delay)
            if self._live:
                log.warning(
                    "directory_cache_off",
                    hint="lost the notification connection; reading the directory per batch "
                    "until it is back",
                )
            self._live = False
            self._cache.clear()
            await self._stop_listening()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _preload(self, *, refresh: bool = False) -> None:
        """The whole directory into the cache when it has at most ``preload_users``
        users, each entry kept until a change drops it (the TTL then means: read
        it all again that often, which ``refresh`` does when due); else the bounded
        cache. A chunk read while a change arrived is not kept (its users are read
        when a batch names them), so the cache stays as exact as a batch's read."""
        if not self._preload_users:
            return
        ttl = self._bounded[1]
        if refresh and (ttl is None or self._clock() - self._attempted_at < ttl):
            return
        started = self._attempted_at = self._clock()
        try:
            ids = await self._store.user_ids(self._preload_users)
            if ids is None:
                self._cache.max_users, self._cache.ttl_seconds = self._bounded
                log.info("directory_not_preloaded", limit=self._preload_users)
                return
            # Interned first, the list's strings are the ones every row and key keeps, and
            # each chunk's own copies die with it. Otherwise the list's died at the end: at
            # 100,000 users, 7 MB of small holes among the rows (sys._debugmallocstats),
            # which routing's short-lived objects then fill, scattered.
            ids = [sys.intern(user_id) for user_id in ids]
            self._cache.max_users = max(self._bounded[0], self._preload_users)
            self._cache.ttl_seconds = None
            for first in range(0, len(ids), PRELOAD_CHUNK):
                chunk = ids[first : first + PRELOAD_CHUNK]
                generation = self._cache.generation
                fresh = await self._store.directory_for(chunk)
                if not self._live:
                    return
                if self._cache.generation == generation:
                    for user_id, entry in entries_from(fresh, chunk, self._clock()).items():
                        self._cache.put(user_id, entry)
                        if self._compile_entry is not None:
                            self._compile_entry(entry)
            metrics.DIRECTORY_CACHE_USERS.set(len(self._cache))
            # The rows live until a change drops them: out of the collector's way, so
            # its full passes do not walk a whole directory of objects that are not
            # garbage (a dropped row is still freed by its reference count).
            gc.collect()
            gc.freeze()
            log.info(
                "directory_preloaded",
                users=len(ids),
                seconds=round(self._clock() - started, 2),
            )
        except Exception as error:  # the bounded cache serves until the next attempt
            self._cache.max_users, self._cache.ttl_seconds = self._bounded
            log.warning("directory_preload_failed", error=str(error))
        finally:
            self._first_load.set()

    async def _stop_listening(self) -> None:
        self._live = False
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                await listener.close()
            except Exception as error:  # already broken: nothing to release
                log.debug("directory_listener_close_failed", error=str(error))
