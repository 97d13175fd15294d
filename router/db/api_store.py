"""What ``router api`` needs beyond :class:`router.db.store.PgStore` (whose
directory writes, :mod:`router.directory.writes`, it shares with the CLI):
idempotent answers (``Idempotency-Key``), the audit log read back, and lookups
by external id. Its SQL lives in ``sql/api.sql``.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Self

from router.db import sql
from router.db.store import PgStore
from router.directory.models import ContactMethod, User


@cache
def api_queries() -> dict[str, str]:
    """The named queries of ``sql/api.sql``."""
    return sql.parse_queries(resources.files(sql.__name__).joinpath("api.sql").read_text())


class ApiStore(PgStore):
    """:class:`PgStore` with idempotency keys, the audit log and external ids."""

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> Self:
        """Open a pool (see :meth:`PgStore.connect`)."""
        store = await super().connect(url, min_size=min_size, max_size=max_size)
        assert isinstance(store, cls)
        return store

    async def list_audit(
        self,
        entity: str | None = None,
        entity_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Audit rows, newest first."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                api_queries()["api_list_audit"], entity, entity_id, since, limit
            )
        return [{**dict(r), "at": r["at"].isoformat()} for r in rows]

    async def user_by_external_id(self, external_id: str) -> User | None:
        """The user with this external id, if any."""
        async with self._conn() as conn:
            row = await conn.fetchrow(api_queries()["api_user_by_external_id"], external_id)
        return None if row is None else User.model_validate(dict(row))

    async def method_by_external_id(self, external_id: str) -> ContactMethod | None:
        """The contact method with this external id, if any."""
        async with self._conn() as conn:
            row = await conn.fetchrow(api_queries()["api_method_by_external_id"], external_id)
        return None if row is None else ContactMethod.model_validate(dict(row))

    async def claim_key(
        self, actor: str, key: str, request_hash: str
    ) -> tuple[str, int, Any] | None:
        """Take ``key`` for a request (None), or the (hash, status, body) already kept for
        it within 24 h; status 0 means another request holding it is still running."""
        q = api_queries()
        async with self._conn() as conn, conn.transaction():
            await conn.execute(q["api_forget_stale_key"], actor, key)
            if await conn.fetchval(q["api_claim_key"], actor, key, request_hash) is not None:
                return None
            row = await conn.fetchrow(q["api_keyed_answer"], actor, key)
        if row is None:  # released between the two statements: nothing kept
            return ("", 0, None)
        return row["request_hash"], row["status"], row["body"]

    async def keep_answer(self, actor: str, key: str, status: int, body: Any) -> None:
        """Keep the answer to a claimed key for 24 h."""
        async with self._conn() as conn:
            await conn.execute(api_queries()["api_save_keyed_answer"], actor, key, status, body)

    async def release_key(self, actor: str, key: str) -> None:
        """Give a claimed key back (its request failed; a retry may use it)."""
        async with self._conn() as conn:
            await conn.execute(api_queries()["api_release_key"], actor, key)
