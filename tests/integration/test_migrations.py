"""Migrations build the schema the code expects, once, even when two pods race."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from router.db import sql
from router.db.migrate import migrate
from router.db.store import PgStore
from router.directory.models import ContactMethod, User


async def columns(url: str, table: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table
        )
    finally:
        await conn.close()
    return {r["column_name"] for r in rows}


async def test_all_migrations_give_the_columns_the_models_read(empty_database_url: str) -> None:
    applied = await migrate(empty_database_url)
    assert applied == [f"{m.version:04d}_{m.name}" for m in sql.migrations()]
    assert set(User.model_fields) <= await columns(empty_database_url, "users")
    assert set(ContactMethod.model_fields) <= await columns(empty_database_url, "contact_methods")
    store = await PgStore.connect(empty_database_url)
    try:
        assert await store.schema_version() == sql.latest_version()
        await store.check_schema()
    finally:
        await store.close()


async def test_migrating_again_applies_nothing(empty_database_url: str) -> None:
    await migrate(empty_database_url)
    assert await migrate(empty_database_url) == []


async def test_two_concurrent_migrations_apply_each_step_once(empty_database_url: str) -> None:
    first, second = await asyncio.gather(migrate(empty_database_url), migrate(empty_database_url))
    assert sorted([first, second], key=len) == [
        [],
        [f"{m.version:04d}_{m.name}" for m in sql.migrations()],
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO contact_methods (user_id, transport, value) VALUES ('u', 'fax', 'x')",
        "INSERT INTO contact_methods (user_id, transport, value) VALUES ('u', 'sms', '')",
        "INSERT INTO contact_methods (user_id, transport, value, webhook_method) "
        "VALUES ('u', 'email', 'a@b.example', 'POST')",
        "INSERT INTO contact_methods (user_id, transport, value, webhook_method) "
        "VALUES ('u', 'webhook', 'https://x.example', 'PATCH')",
        "INSERT INTO contact_methods (user_id, transport, value) VALUES ('nobody', 'sms', '+1')",
        "INSERT INTO contact_methods (user_id, transport, value, is_primary) VALUES "
        "('u', 'sms', '+14155551234', true), ('u', 'sms', '+14155551235', true)",
        "DELETE FROM users WHERE id = 'has-methods'",
    ],
    ids=[
        "transport-enum",
        "empty-value",
        "webhook-options-on-email",
        "webhook-method-enum",
        "unknown-user",
        "two-primaries",
        "delete-user-with-methods",
    ],
)
async def test_schema_refuses_what_breaks_an_invariant(database_url: str, statement: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO users (id) VALUES ('u'), ('has-methods')")
        await conn.execute(
            "INSERT INTO contact_methods (user_id, transport, value) "
            "VALUES ('has-methods', 'email', 'h@example.com')"
        )
        with pytest.raises(asyncpg.IntegrityConstraintViolationError):
            await conn.execute(statement)
    finally:
        await conn.close()
