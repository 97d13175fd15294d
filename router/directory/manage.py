"""Directory management in PostgreSQL beyond the writes of
:mod:`router.directory.writes`: reads for the commands and the API (users,
methods with filters and keyset paging), shifts, verification codes and the
bulk import."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from router.directory.models import IMPORT_COLUMNS, ContactMethod, Shift, User
from router.directory.store import method_from, shift_from, user_from
from router.directory.writes import DirectoryWrites
from router.errors import NotFound, VerificationRefused
from schemas import Transport


def like_literal(text: str | None) -> str | None:
    """``text`` escaped for LIKE/ILIKE, so ``%`` and ``_`` in a search match themselves."""
    if text is None:
        return None
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class MethodFilter:
    """Which contact methods ``list`` and ``count`` return; None means any."""

    user_id: str | None = None
    transport: Transport | None = None
    verified: bool | None = None
    search: str | None = None
    metadata: Mapping[str, str] | None = None
    tag: str | None = None

    def params(self) -> list[Any]:
        """The filter's query parameters, in the order the SQL takes them."""
        return [
            self.user_id,
            self.transport,
            self.verified,
            like_literal(self.search),
            dict(self.metadata) if self.metadata else None,
            self.tag,
        ]


class DirectoryManagement(DirectoryWrites):
    """The writes, plus reads, shifts, verification and import."""

    async def add_shift(
        self, schedule_id: str, user_id: str, starts_at: datetime, ends_at: datetime
    ) -> Shift:
        """Add a shift, creating the schedule on first use."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute(self._q["ensure_schedule"], schedule_id)
            try:
                row = await conn.fetchrow(
                    self._q["add_shift"], schedule_id, user_id, starts_at, ends_at
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFound(
                    f"User {user_id!r} does not exist; add it first with "
                    f"`router users add {user_id}`."
                ) from None
        return shift_from(row)

    async def list_shifts(self, schedule_id: str | None = None) -> list[Shift]:
        """Every shift, or one schedule's, by schedule then start."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["list_shifts"], schedule_id)
        return [shift_from(r) for r in rows]

    async def get_user(self, user_id: str) -> User:
        """One user; :class:`NotFound` if there is none."""
        async with self._conn() as conn:
            row = await conn.fetchrow(self._q["get_user"], user_id)
        if row is None:
            raise NotFound(f"User {user_id!r} does not exist.")
        return user_from(row)

    async def list_users(
        self, *, after: str | None = None, search: str | None = None, limit: int = 100
    ) -> list[User]:
        """Users by id, after ``after``, whose id or name contains ``search``."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["list_users"], after, like_literal(search), limit)
        return [user_from(r) for r in rows]

    async def get_contact_method(self, method_id: str) -> ContactMethod:
        """One method; :class:`NotFound` if there is none."""
        async with self._conn() as conn:
            try:
                row = await conn.fetchrow(self._q["get_contact_method"], method_id)
            except asyncpg.DataError:
                row = None  # not a uuid
        if row is None:
            raise NotFound(f"Contact method {method_id!r} does not exist.")
        return method_from(row)

    async def list_contact_methods(
        self,
        where: MethodFilter,
        *,
        after: tuple[str, str, str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ContactMethod]:
        """Methods in (user, transport, value) order, after the key ``after`` (keyset paging)."""
        cursor = list(after) if after else [None, None, None]
        async with self._conn() as conn:
            rows = await conn.fetch(
                self._q["list_contact_methods"], *where.params(), *cursor, limit, offset
            )
        return [method_from(r) for r in rows]

    async def count_contact_methods(self, where: MethodFilter) -> int:
        """How many methods match ``where``: the list's own query, unpaged, counted (so
        the count and the list can never disagree on a filter)."""
        listing = self._q["list_contact_methods"].rstrip().removesuffix(";")
        unpaged = [None, None, None, None, 0]  # no cursor, LIMIT NULL (all), OFFSET 0
        async with self._conn() as conn:
            return int(
                await conn.fetchval(
                    f"SELECT count(*) FROM ({listing}\n) AS matching", *where.params(), *unpaged
                )
            )

    async def primary_contact_method(self, user_id: str, transport: str) -> ContactMethod:
        """The user's primary method of ``transport``; :class:`NotFound` when there is none."""
        async with self._conn() as conn:
            row = await conn.fetchrow(self._q["primary_contact_method"], user_id, transport)
        if row is None:
            raise NotFound(f"User {user_id!r} has no primary {transport} method.")
        return method_from(row)

    async def start_verification(
        self, method_id: str, code_hash: str, ttl_seconds: float
    ) -> tuple[ContactMethod, datetime]:
        """Store a new code (replacing any pending one); the method and when the code expires."""
        method = await self.get_contact_method(method_id)
        async with self._conn() as conn:
            expires_at = await conn.fetchval(
                self._q["start_verification"], method_id, code_hash, float(ttl_seconds)
            )
        return method, expires_at

    async def confirm_verification(
        self, method_id: str, matches: Callable[[str], bool], max_attempts: int
    ) -> ContactMethod:
        """Mark the method verified if ``matches(stored_hash)``; else count and refuse.

        The failed attempt is counted even though the command is refused.
        """
        await self.get_contact_method(method_id)
        refusal: str | None = None
        async with self._conn() as conn, conn.transaction():
            pending = await conn.fetchrow(self._q["pending_verification"], method_id)
            if pending is None:
                refusal = (
                    f"Contact method {method_id} has no verification pending; run "
                    f"`router contacts verify {method_id}` to send a code."
                )
            elif pending["expired"]:
                await conn.execute(self._q["end_verification"], method_id)
                refusal = (
                    "The code has expired; run `router contacts verify "
                    f"{method_id}` to send a new one."
                )
            elif not matches(pending["code_hash"]):
                failed = await conn.fetchval(self._q["count_failed_verification"], method_id)
                left = max_attempts - int(failed)
                if left <= 0:
                    await conn.execute(self._q["end_verification"], method_id)
                    refusal = (
                        "Wrong code, and too many wrong codes: this code is void; run "
                        f"`router contacts verify {method_id}` to send a new one."
                    )
                else:
                    refusal = f"Wrong code; {left} attempt(s) left before it is void."
            else:
                await conn.execute(self._q["end_verification"], method_id)
                row = await conn.fetchrow(self._q["mark_verified"], method_id)
                return method_from(row)
        raise VerificationRefused(refusal)

    async def users_that_exist(self, user_ids: Collection[str]) -> set[str]:
        """Which of ``user_ids`` exist."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["users_that_exist"], list(user_ids))
        return {r["id"] for r in rows}

    async def import_contact_methods(
        self,
        rows: Sequence[Sequence[Any]],
        *,
        create_users: bool = False,
        actor: str | None = None,
    ) -> tuple[int, int]:
        """Upsert rows (in ``IMPORT_COLUMNS`` order) by (user, transport, value), all or nothing.

        Rows are copied into a temporary table and merged with one statement; an
        imported primary replaces the old primary of its (user, transport). With an
        ``actor``, one audit row per method added or changed. Returns (inserted, updated).
        """
        async with self._conn() as conn, conn.transaction():
            await conn.execute(self._q["create_import_table"])
            await conn.copy_records_to_table("import_rows", records=rows, columns=IMPORT_COLUMNS)
            if create_users:
                await conn.execute(self._q["create_missing_users"])
            before: dict[str, ContactMethod] = {}
            if actor is not None:
                before = {
                    r["id"]: ContactMethod.model_validate(dict(r))
                    for r in await conn.fetch(self._q["imported_methods"])
                }
            await conn.execute(self._q["clear_primaries_for_import"])
            try:
                counts = await conn.fetchrow(self._q["upsert_imported"])
            except asyncpg.ForeignKeyViolationError as error:
                raise NotFound(
                    f"An imported row names a user that does not exist ({error.detail}); "
                    "add the users first or pass --create-users."
                ) from None
            if actor is not None:
                await self._audit_import(conn, before, actor)
        return int(counts["inserted"]), int(counts["updated"])

    async def _audit_import(
        self, conn: asyncpg.Connection, before: Mapping[str, ContactMethod], actor: str
    ) -> None:
        for row in await conn.fetch(self._q["imported_methods"]):
            after = ContactMethod.model_validate(dict(row))
            old = before.get(after.id)
            if old is not None and old.updated_at == after.updated_at:
                continue
            await self._audit(
                conn,
                actor,
                "import",
                "contact_method",
                after.id,
                old.model_dump(mode="json") if old else None,
                after.model_dump(mode="json"),
                after.transport,
            )
