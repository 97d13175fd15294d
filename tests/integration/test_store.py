"""The Postgres store: snapshots for the worker, and writes that keep the invariants."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from router.errors import Conflict, NotFound, NotMigrated, StoreUnavailable
from router.store import NewContactMethod, PgStore


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PgStore]:
    s = await PgStore.connect(database_url)
    yield s
    await s.close()


async def test_directory_snapshot_has_known_users_and_their_methods_in_creation_order(
    store: PgStore,
) -> None:
    await store.add_user("alice", "Alice", "Europe/Berlin")
    await store.add_user("bob", None, "UTC")
    a1 = await store.add_contact_method(NewContactMethod("alice", "sms", "+14155551234"))
    a2 = await store.add_contact_method(NewContactMethod("alice", "email", "a@example.com"))
    await store.add_contact_method(NewContactMethod("bob", "email", "b@example.com"))
    directory = await store.directory_for(["alice", "ghost"])
    assert set(directory.users) == {"alice"}
    assert directory.users["alice"].timezone == "Europe/Berlin"
    assert [m.id for m in directory.methods_of("alice")] == [a1.id, a2.id]
    assert directory.methods_of("ghost") == ()


async def test_webhook_options_round_trip(store: PgStore) -> None:
    await store.add_user("alice", None, "UTC")
    created = await store.add_contact_method(
        NewContactMethod(
            "alice",
            "webhook",
            "https://h.example/x",
            webhook_method="PUT",
            webhook_headers={"Authorization": "Bearer t"},
            webhook_query={"k": "v"},
            webhook_body='{"t": "{{title}}"}',
        )
    )
    [read] = (await store.directory_for(["alice"])).methods_of("alice")
    assert read == created
    assert (read.webhook_method, read.webhook_headers, read.webhook_query) == (
        "PUT",
        {"Authorization": "Bearer t"},
        {"k": "v"},
    )


async def test_a_duplicate_value_is_refused_naming_the_existing_method(store: PgStore) -> None:
    await store.add_user("alice", None, "UTC")
    first = await store.add_contact_method(NewContactMethod("alice", "email", "a@example.com"))
    with pytest.raises(Conflict, match=first.id):
        await store.add_contact_method(NewContactMethod("alice", "email", "a@example.com"))


async def test_a_new_primary_clears_the_old_one_of_that_transport_only(store: PgStore) -> None:
    await store.add_user("alice", None, "UTC")
    old = await store.add_contact_method(
        NewContactMethod("alice", "sms", "+14155551234", is_primary=True)
    )
    mail = await store.add_contact_method(
        NewContactMethod("alice", "email", "a@example.com", is_primary=True)
    )
    new = await store.add_contact_method(
        NewContactMethod("alice", "sms", "+14155551235", is_primary=True)
    )
    primary = {
        m.id: m.is_primary for m in (await store.directory_for(["alice"])).methods_of("alice")
    }
    assert primary == {old.id: False, mail.id: True, new.id: True}


async def test_a_method_for_an_unknown_user_is_refused(store: PgStore) -> None:
    with pytest.raises(NotFound, match="router users add ghost"):
        await store.add_contact_method(NewContactMethod("ghost", "email", "g@example.com"))


async def test_an_existing_user_id_is_refused(store: PgStore) -> None:
    await store.add_user("alice", None, "UTC")
    with pytest.raises(Conflict, match="already exists"):
        await store.add_user("alice", None, "UTC")


async def test_an_unreachable_database_is_reported_as_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="ROUTER_DATABASE_URL") as info:
        await PgStore.connect("postgresql://router:secret@127.0.0.1:1/router")
    assert "secret" not in str(info.value)


async def test_an_unmigrated_database_is_reported_as_such(empty_database_url: str) -> None:
    store = await PgStore.connect(empty_database_url)
    try:
        with pytest.raises(NotMigrated, match="router db migrate"):
            await store.check_schema()
        with pytest.raises(NotMigrated, match="router db migrate"):
            await store.directory_for(["alice"])
    finally:
        await store.close()
