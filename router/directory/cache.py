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
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

import structlog
from pydantic import BaseModel

from router import metrics
from router.db.store import Store
from router.delivery.trail import JobRow, PageState, Trail, TrailRow
from router.directory.models import ContactMethod, Directory, User
from router.directory.store import ScheduleLookup
from router.held.digest import HeldPage
from router.routing.rules import Limits, RateDecision, Send

log = structlog.get_logger("router.cache")

Address = tuple[str, str]
T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Entry:
    """What the cache knows of one user id: the user (None: no such user), their
    methods in creation order, which of their addresses are opted out, and when
    it was read."""

    user: User | None
    methods: tuple[ContactMethod, ...]
    opted_out: frozenset[Address]
    read_at: float

    def addresses(self) -> set[Address]:
        """The addresses an opt-out can name (webhooks cannot be opted out)."""
        return {(m.transport, m.value) for m in self.methods if m.transport != "webhook"}


@dataclass(frozen=True)
class Change:
    """What one notification says changed."""

    users: frozenset[str] = frozenset()
    addresses: frozenset[Address] = frozenset()
    everything: bool = False


def parse_change(payload: str) -> Change:
    """A ``router_directory`` payload; anything unreadable means "everything"."""
    try:
        data = json.loads(payload)
        if data.get("all"):
            return Change(everything=True)
        return Change(
            users=frozenset(str(u) for u in data.get("users") or ()),
            addresses=frozenset((str(t), str(a)) for t, a in data.get("addresses") or ()),
        )
    except (ValueError, TypeError, AttributeError):
        return Change(everything=True)


class DirectoryCache:
    """Entries by user id, least recently used first out, each for at most ``ttl``."""

    def __init__(
        self, max_users: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_users
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._by_address: dict[Address, set[str]] = {}
        #: Bumped by every invalidation: a read that saw it change is not kept.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: str) -> Entry | None:
        """The entry if present and fresh (and then most recently used)."""
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        if self._clock() - entry.read_at >= self._ttl:
            self._drop(user_id)
            return None
        self._entries.move_to_end(user_id)
        return entry

    def put(self, user_id: str, entry: Entry) -> None:
        if user_id in self._entries:
            self._drop(user_id)
        self._entries[user_id] = entry
        for address in entry.addresses():
            self._by_address.setdefault(address, set()).add(user_id)
        while len(self._entries) > self._max:
            self._drop(next(iter(self._entries)))

    def invalidate(self, change: Change) -> None:
        """Forget what ``change`` names (everything, for a change that says so)."""
        self.generation += 1
        if change.everything:
            self.clear()
            return
        for user_id in change.users:
            self._drop(user_id)
        for address in change.addresses:
            for user_id in list(self._by_address.get(address, ())):
                self._drop(user_id)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._by_address.clear()

    def _drop(self, user_id: str) -> None:
        entry = self._entries.pop(user_id, None)
        if entry is None:
            return
        for address in entry.addresses():
            holders = self._by_address.get(address)
            if holders is not None:
                holders.discard(user_id)
                if not holders:
                    del self._by_address[address]


_FIELDS_SETS: dict[frozenset[str], set[str]] = {}


def _compact(model: T) -> T:
    """``model`` sharing its set of explicitly set field names with every model that
    set the same fields (all rows of a table do): a set per model is 700 bytes of
    the ~2 KB a cached method costs. Safe because cached models are frozen, so
    pydantic never adds to the set."""
    own = model.__pydantic_fields_set__
    shared = _FIELDS_SETS.setdefault(frozenset(own), set(own))
    object.__setattr__(model, "__pydantic_fields_set__", shared)
    return model


def entries_from(directory: Directory, user_ids: Iterable[str], read_at: float) -> dict[str, Entry]:
    """One entry per id in ``user_ids``, from a directory read for (at least) them."""
    found = {}
    for user_id in user_ids:
        methods = tuple(_compact(m) for m in directory.methods_of(user_id))
        user = directory.users.get(user_id)
        found[user_id] = Entry(
            user=_compact(user) if user is not None else None,
            methods=methods,
            opted_out=frozenset(
                (m.transport, m.value)
                for m in methods
                if (m.transport, m.value) in directory.opt_outs
            ),
            read_at=read_at,
        )
    return found


def merge(
    entries: Mapping[str, Entry],
    fresh: Directory | None,
    on_call: Mapping[ScheduleLookup, tuple[str, ...]] | None = None,
) -> Directory:
    """The batch's directory: cached entries plus what was read for it."""
    users: dict[str, User] = {}
    methods: dict[str, tuple[ContactMethod, ...]] = {}
    opt_outs: set[Address] = set()
    for user_id, entry in entries.items():
        if entry.user is not None:
            users[user_id] = entry.user
        if entry.methods:
            methods[user_id] = entry.methods
        opt_outs |= entry.opted_out
    if fresh is not None:
        users.update(fresh.users)
        methods.update(fresh.methods)
        opt_outs |= fresh.opt_outs
    return Directory(
        users=users,
        methods=methods,
        on_call=dict(on_call if on_call is not None else fresh.on_call if fresh else {}),
        opt_outs=frozenset(opt_outs),
    )


class Listener(Protocol):
    """A live subscription to directory changes (see ``PgStore.listen``)."""

    async def close(self) -> None: ...

    def is_alive(self) -> bool: ...

    async def check(self) -> bool: ...


class ListeningStore(Store, Protocol):
    async def listen(
        self, on_change: Callable[[str], None], on_lost: Callable[[], None]
    ) -> Listener: ...


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
    ) -> None:
        self._store = store
        self._cache = cache
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
        """Listen in the background; batches read uncached until it is up."""
        self._task = asyncio.create_task(self._keep_listening(), name="router-directory-listener")

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
        if self._live and self._cache.generation == generation:
            for user_id, entry in entries_from(fresh, covered, read_at).items():
                self._cache.put(user_id, entry)
        return merge({k: v for k, v in hits.items() if k not in covered}, fresh)

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
                while not self._lost.is_set():
                    try:
                        await asyncio.wait_for(self._lost.wait(), self._check_seconds)
                    except TimeoutError:
                        if not await self._listener.check():
                            break
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

    async def _stop_listening(self) -> None:
        self._live = False
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                await listener.close()
            except Exception as error:  # already broken: nothing to release
                log.debug("directory_listener_close_failed", error=str(error))
