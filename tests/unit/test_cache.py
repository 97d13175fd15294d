"""The in-process directory cache: same directory as the store, fewer reads, never stale
past a notification."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from router.db.memstore import InMemoryStore
from router.directory.cache import CachedDirectory, Change, DirectoryCache, Entry, parse_change
from tests.conftest import make_method, make_user


class FakeListener:
    def __init__(self) -> None:
        self.alive = True

    async def close(self) -> None:
        self.alive = False

    def is_alive(self) -> bool:
        return self.alive

    async def check(self) -> bool:
        return self.alive


class ListeningMemStore(InMemoryStore):
    """The in-memory store, announcing changes the way migration 0004's triggers do."""

    def __init__(self) -> None:
        super().__init__()
        self.on_change: Callable[[str], None] | None = None
        self.on_lost: Callable[[], None] | None = None
        self.listener: FakeListener | None = None
        self.refuse_listen = False

    async def listen(
        self, on_change: Callable[[str], None], on_lost: Callable[[], None]
    ) -> FakeListener:
        if self.refuse_listen:
            raise OSError("no notifications today")
        self.on_change, self.on_lost = on_change, on_lost
        self.listener = FakeListener()
        return self.listener

    def announce(self, payload: str) -> None:
        assert self.on_change is not None
        self.on_change(payload)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> ListeningMemStore:
    store = ListeningMemStore()
    for user in ("alice", "bob"):
        store.users[user] = make_user(user)
    store.methods["m1"] = make_method("m1", "alice", "email", "a@example.com")
    store.methods["m2"] = make_method("m2", "alice", "sms", "+14155550101")
    store.methods["m3"] = make_method("m3", "bob", "email", "b@example.com")
    return store


async def until_live(cached: CachedDirectory) -> None:
    for _ in range(100):
        if cached.live:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the cache never went live")


@pytest.fixture
async def cached(store: ListeningMemStore) -> AsyncIterator[CachedDirectory]:
    cached = CachedDirectory(store, DirectoryCache(100, 300.0))
    await cached.start()
    await until_live(cached)
    yield cached
    await cached.close()


async def test_a_warm_cache_answers_the_next_batch_without_reading(
    store: ListeningMemStore, cached: CachedDirectory
) -> None:
    first = await cached.directory_for({"alice", "bob"})
    reads = store.reads
    second = await cached.directory_for({"alice", "bob"})
    assert store.reads == reads
    assert second == first == await store.directory_for({"alice", "bob"})


async def test_unknown_users_are_cached_as_unknown_until_one_is_added(
    store: ListeningMemStore, cached: CachedDirectory
) -> None:
    assert "carol" not in (await cached.directory_for({"carol"})).users
    reads = store.reads
    assert "carol" not in (await cached.directory_for({"carol"})).users
    assert store.reads == reads
    store.users["carol"] = make_user("carol")
    store.announce('{"users": ["carol"]}')
    assert "carol" in (await cached.directory_for({"carol"})).users


async def test_a_change_to_a_user_rereads_that_user_only(
    store: ListeningMemStore, cached: CachedDirectory
) -> None:
    await cached.directory_for({"alice", "bob"})
    store.methods["m1"] = store.methods["m1"].model_copy(update={"muted": True})
    store.announce('{"users": ["alice"]}')
    reads = store.reads
    directory = await cached.directory_for({"alice", "bob"})
    assert store.reads == reads + 1
    assert directory.methods_of("alice")[0].muted
    assert directory == await store.directory_for({"alice", "bob"})


async def test_an_opt_out_drops_every_user_with_that_address(
    store: ListeningMemStore, cached: CachedDirectory
) -> None:
    await cached.directory_for({"alice", "bob"})
    store.opt_outs.add(("sms", "+14155550101"))
    store.announce('{"addresses": [["sms", "+14155550101"]]}')
    directory = await cached.directory_for({"alice", "bob"})
    assert ("sms", "+14155550101") in directory.opt_outs


async def test_everything_and_unreadable_payloads_empty_the_cache(
    store: ListeningMemStore, cached: CachedDirectory
) -> None:
    for payload in ('{"all": true}', "not json", '{"users": 5}'):
        await cached.directory_for({"alice"})
        reads = store.reads
        store.announce(payload)
        await cached.directory_for({"alice"})
        assert store.reads == reads + 1, payload


async def test_entries_expire_after_the_ttl_as_a_safety_net(store: ListeningMemStore) -> None:
    clock = Clock()
    cached = CachedDirectory(store, DirectoryCache(100, 60.0, clock), clock=clock)
    await cached.start()
    await until_live(cached)
    try:
        await cached.directory_for({"alice"})
        reads = store.reads
        clock.now = 59.0
        await cached.directory_for({"alice"})
        assert store.reads == reads
        clock.now = 60.0
        await cached.directory_for({"alice"})
        assert store.reads == reads + 1
    finally:
        await cached.close()


def test_the_cache_is_bounded_least_recently_used_first_out() -> None:
    cache = DirectoryCache(2, 300.0, Clock())
    for user in ("a", "b"):
        cache.put(user, Entry(None, (), frozenset(), 0.0))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", Entry(None, (), frozenset(), 0.0))
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None


def test_a_cache_at_most_half_full_keeps_its_order_and_a_fuller_one_its_recency() -> None:
    """Below half full (where a directory read whole sits) a use moves nothing, so the
    dict of a whole directory is not churned into twice its size; once more than half
    full, a use makes the entry the most recent again, as the bound needs."""
    cache = DirectoryCache(6, None, Clock())
    for user in ("a", "b", "c"):
        cache.put(user, Entry(None, (), frozenset(), 0.0))
    assert cache.get("a") is not None
    assert list(cache._entries) == ["a", "b", "c"]
    cache.put("d", Entry(None, (), frozenset(), 0.0))
    assert cache.get("a") is not None
    assert list(cache._entries) == ["b", "c", "d", "a"]
    for user in ("e", "f", "g"):
        cache.put(user, Entry(None, (), frozenset(), 0.0))
    assert list(cache._entries) == ["c", "d", "a", "e", "f", "g"], "b, least recent, went"


async def test_without_notifications_every_batch_reads_the_store(
    store: ListeningMemStore,
) -> None:
    store.refuse_listen = True
    cached = CachedDirectory(store, DirectoryCache(100, 300.0))
    await cached.start()
    try:
        await asyncio.sleep(0.05)
        assert not cached.live
        reads = store.reads
        await cached.directory_for({"alice"})
        await cached.directory_for({"alice"})
        assert store.reads == reads + 2
    finally:
        await cached.close()


async def test_losing_the_notification_connection_empties_the_cache_and_bypasses_it(
    store: ListeningMemStore, cached: CachedDirectory
) -> None:
    await cached.directory_for({"alice"})
    store.refuse_listen = True
    assert store.on_lost is not None
    store.on_lost()
    for _ in range(100):
        if not cached.live:
            break
        await asyncio.sleep(0.01)
    assert not cached.live
    store.methods["m1"] = store.methods["m1"].model_copy(
        update={"disabled": True}
    )  # missed: nobody listens
    assert (await cached.directory_for({"alice"})).methods_of("alice")[0].disabled
    store.refuse_listen = False
    await until_live(cached)
    assert (await cached.directory_for({"alice"})).methods_of("alice")[0].disabled


async def test_a_read_that_overlaps_a_change_is_used_once_and_not_kept(
    store: ListeningMemStore, cached: CachedDirectory
) -> None:
    read = store.directory_for

    async def read_then_change(*args: object, **kwargs: object) -> object:
        directory = await read(*args, **kwargs)  # type: ignore[arg-type]
        store.announce('{"users": ["someone-else"]}')
        return directory

    store.directory_for = read_then_change  # type: ignore[method-assign]
    await cached.directory_for({"alice"})
    store.directory_for = read  # type: ignore[method-assign]
    reads = store.reads
    await cached.directory_for({"alice"})
    assert store.reads == reads + 1


def test_payloads_name_users_addresses_or_everything() -> None:
    assert parse_change('{"users": ["a", "b"]}') == Change(users=frozenset({"a", "b"}))
    assert parse_change('{"addresses": [["sms", "+1"]]}') == Change(
        addresses=frozenset({("sms", "+1")})
    )
    assert parse_change('{"all": true}').everything
    assert parse_change("[]").everything


async def test_the_workers_own_opt_out_applies_to_its_next_batch_at_once(
    store: ListeningMemStore, cached: CachedDirectory
) -> None:
    await cached.directory_for({"alice"})
    await cached.add_opt_out("sms", "+14155550101", "topic")  # no notification has come back
    assert ("sms", "+14155550101") in (await cached.directory_for({"alice"})).opt_outs
    await cached.remove_opt_out("sms", "+14155550101")
    assert ("sms", "+14155550101") not in (await cached.directory_for({"alice"})).opt_outs


async def test_who_is_on_call_is_read_afresh_so_rotation_changes_need_no_notification(
    store: ListeningMemStore, cached: CachedDirectory
) -> None:
    from datetime import UTC, datetime, timedelta

    from router.schedules.oncall import Override, Rotation

    at = datetime(2026, 4, 1, 12, tzinfo=UTC)
    await store.add_schedule("ops", "Ops", "Europe/Berlin")
    await store.add_rotation(
        "ops", Rotation("weekly", ("alice", "bob"), timedelta(weeks=1), at - timedelta(days=1))
    )
    first = await cached.directory_for({"bob"}, [("ops", at)])
    assert first.on_call == {("ops", at): ("alice",)}
    # No announcement: migration 0008 sends none, and none is needed.
    await store.add_override("ops", Override(0, "bob", at, at + timedelta(hours=1), "alice"))
    second = await cached.directory_for({"bob"}, [("ops", at)])
    assert second.on_call == {("ops", at): ("bob",)}
    assert set(second.users) == {"bob"}


async def test_a_directory_that_fits_is_read_whole_before_start_returns(
    store: ListeningMemStore,
) -> None:
    cached = CachedDirectory(store, DirectoryCache(1, 300.0), preload_users=10)
    try:
        await asyncio.wait_for(cached.start(), 5)  # returns once read, not at a timeout
        assert cached.live
        reads = store.reads
        directory = await cached.directory_for({"alice", "bob"})
        assert store.reads == reads  # both users held, though the bounded cache holds one
        assert directory == await store.directory_for({"alice", "bob"})
        store.methods["m1"] = store.methods["m1"].model_copy(update={"muted": True})
        store.announce('{"users": ["alice"]}')
        assert (await cached.directory_for({"alice"})).methods_of("alice")[0].muted
    finally:
        await cached.close()


async def test_each_entry_of_a_directory_read_whole_is_handed_to_routing_as_it_is_read(
    store: ListeningMemStore,
) -> None:
    """What routing keeps of each user (its compiled plan) is made as the directory is
    read whole, once per entry the cache keeps; a change drops the entry and with it
    what was made."""
    handed: list[Entry] = []
    cached = CachedDirectory(
        store, DirectoryCache(1, 300.0), preload_users=10, compile_entry=handed.append
    )
    try:
        await asyncio.wait_for(cached.start(), 5)
        directory = await cached.directory_for({"alice", "bob"})
        assert {id(e) for e in handed} == {id(directory.slots[u]) for u in ("alice", "bob")}
        alice = directory.slots["alice"]
        store.announce('{"users": ["alice"]}')
        assert (await cached.directory_for({"alice"})).slots["alice"] is not alice
        assert len(handed) == 2  # a user read again for a batch compiles on first use
    finally:
        await cached.close()


async def test_a_directory_larger_than_the_setting_is_cached_as_before(
    store: ListeningMemStore,
) -> None:
    cached = CachedDirectory(store, DirectoryCache(100, 300.0), preload_users=1)
    try:
        await asyncio.wait_for(cached.start(), 5)
        reads = store.reads
        await cached.directory_for({"alice"})
        assert store.reads == reads + 1  # not read at start: a miss
    finally:
        await cached.close()


def test_rows_read_together_share_their_timestamps_but_keep_their_offsets() -> None:
    from datetime import timedelta, timezone

    from router.directory.models import Directory
    from router.directory.rows import entries_from
    from tests.conftest import T0

    berlin = T0.astimezone(timezone(timedelta(hours=1)))
    methods = [
        make_method("m1", created_at=T0),
        make_method("m2", "bob", created_at=T0.replace()),
        make_method("m3", "carol", created_at=berlin),
    ]
    directory = Directory.of([make_user(u) for u in ("alice", "bob", "carol")], methods)
    entries = entries_from(directory, ["alice", "bob", "carol"], 0.0)
    alice, bob, carol = (entries[u].methods[0] for u in ("alice", "bob", "carol"))
    assert alice.created_at is bob.created_at
    assert carol.created_at == T0
    assert carol.created_at.utcoffset() == timedelta(hours=1)
    assert carol.updated_at.utcoffset() == timedelta(0)
    assert [entries[u].methods[0] for u in ("alice", "bob", "carol")] == methods
