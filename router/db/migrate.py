"""Apply the ordered SQL migrations. Safe to run again, and from two pods at once.

Everything happens in one transaction holding a transaction-scoped advisory
lock: a second runner waits for the first, then finds nothing left to do.
"""

from __future__ import annotations

import asyncpg

from router.db import sql
from router.db.pool import translate_errors

# Any constant works; it only has to be the same for every runner.
_LOCK_KEY = 7_316_405_118_224_801

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(url: str) -> list[str]:
    """Apply every migration not yet applied; return the names applied (empty if none)."""
    async with translate_errors(url):
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
                await conn.execute(_BOOKKEEPING)
                done = {
                    r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
                }
                applied = []
                for migration in sql.migrations():
                    if migration.version in done:
                        continue
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                    applied.append(f"{migration.version:04d}_{migration.name}")
                return applied
        finally:
            await conn.close()
