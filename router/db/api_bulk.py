"""Many contact methods in one transaction, for ``router api``: a batch created
all or nothing (or item by item), a batch deleted, and a user's whole set replaced
by the set another system holds (sync). Each change leaves its audit row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from router.db.api_store import ApiStore, api_queries
from router.directory.manage import NewContactMethod
from router.directory.models import IMPORT_COLUMNS, ContactMethod
from router.errors import Conflict, NotFound, RouterError


@dataclass(frozen=True)
class SyncResult:
    """What a sync did, by method id."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


#: The fields a sync sets on a method it keeps (verification and mute state stay).
_SYNCED = (
    "value",
    "label",
    "is_primary",
    "webhook_method",
    "webhook_headers",
    "webhook_query",
    "webhook_body",
    "metadata",
    "tags",
    "external_id",
)


class BulkApiStore(ApiStore):
    """:class:`ApiStore` with the writes of many methods at once."""

    async def _insert(
        self, conn: asyncpg.Connection, new: NewContactMethod, external_id: str | None, actor: str
    ) -> ContactMethod:
        existing = await conn.fetchval(
            self._q["contact_method_by_value"], new.user_id, new.transport, new.value
        )
        if existing is not None:
            raise Conflict(
                f"User {new.user_id!r} already has that {new.transport} address as contact "
                f"method {existing}."
            )
        if new.is_primary:
            await conn.execute(self._q["clear_primary"], new.user_id, new.transport, None)
        try:
            row = await conn.fetchrow(
                api_queries()["api_insert_contact_method"],
                new.user_id,
                new.transport,
                new.value,
                new.label,
                new.is_primary,
                new.verified,
                new.webhook_method,
                dict(new.webhook_headers),
                dict(new.webhook_query),
                new.webhook_body,
                dict(new.metadata),
                list(new.tags),
                external_id,
            )
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"User {new.user_id!r} does not exist; create it first.") from None
        except asyncpg.UniqueViolationError:
            raise Conflict("Another contact method has that external_id.") from None
        method = ContactMethod.model_validate(dict(row))
        await self._audit(
            conn,
            actor,
            "create",
            "contact_method",
            method.id,
            None,
            method.model_dump(mode="json"),
            method.transport,
        )
        return method

    async def import_audited(
        self, rows: Sequence[Sequence[Any]], actor: str, *, create_users: bool = False
    ) -> tuple[int, int]:
        """:meth:`PgStore.import_contact_methods` with one audit row per method it added or
        changed, in the import's transaction. Returns (inserted, updated)."""
        q = api_queries()
        async with self._conn() as conn, conn.transaction():
            await conn.execute(self._q["create_import_table"])
            await conn.copy_records_to_table("import_rows", records=rows, columns=IMPORT_COLUMNS)
            if create_users:
                await conn.execute(self._q["create_missing_users"])
            before = {
                r["id"]: ContactMethod.model_validate(dict(r))
                for r in await conn.fetch(q["api_imported_methods"])
            }
            await conn.execute(self._q["clear_primaries_for_import"])
            try:
                counts = await conn.fetchrow(self._q["upsert_imported"])
            except asyncpg.ForeignKeyViolationError as error:
                raise NotFound(
                    f"An imported row names a user that does not exist ({error.detail}); "
                    "add the users first or pass --create-users."
                ) from None
            for row in await conn.fetch(q["api_imported_methods"]):
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
        return int(counts["inserted"]), int(counts["updated"])

    async def create_method(
        self, new: NewContactMethod, external_id: str | None, actor: str
    ) -> ContactMethod:
        """Create one method with its audit row, in one transaction."""
        async with self._conn() as conn, conn.transaction():
            return await self._insert(conn, new, external_id, actor)

    async def create_methods(
        self,
        items: Sequence[tuple[NewContactMethod, str | None] | RouterError],
        actor: str,
        *,
        partial: bool = False,
    ) -> list[ContactMethod | RouterError]:
        """Create every item in one transaction. All or nothing (the first refusal is
        raised, with ``.index`` set) unless ``partial``: then each item is created or
        refused on its own, and the results come back in order. An item may already
        be a refusal (it failed validation before the store)."""
        results: list[ContactMethod | RouterError] = []
        async with self._conn() as conn, conn.transaction():
            for index, item in enumerate(items):
                if isinstance(item, RouterError):
                    if not partial:
                        item.index = index  # type: ignore[attr-defined]
                        raise item
                    results.append(item)
                    continue
                new, external_id = item
                try:
                    async with conn.transaction():  # a savepoint: one refusal undoes one item
                        results.append(await self._insert(conn, new, external_id, actor))
                except RouterError as error:
                    if not partial:
                        error.index = index  # type: ignore[attr-defined]
                        raise
                    results.append(error)
        return results

    async def delete_methods(self, ids: Sequence[str], actor: str) -> list[str]:
        """Delete every method named, in one transaction; :class:`NotFound` (deleting
        nothing) if any does not exist."""
        async with self._conn() as conn, conn.transaction():
            try:
                rows = await conn.fetch(api_queries()["api_methods_for_update"], list(ids))
            except asyncpg.DataError:
                raise NotFound("An id in ids is not a contact method id.") from None
            found = {r["id"]: ContactMethod.model_validate(dict(r)) for r in rows}
            missing = [i for i in ids if i not in found]
            if missing:
                raise NotFound(f"Contact method {missing[0]} does not exist; nothing deleted.")
            for method in found.values():
                await conn.execute(self._q["delete_contact_method"], method.id)
                await self._audit(
                    conn,
                    actor,
                    "delete",
                    "contact_method",
                    method.id,
                    method.model_dump(mode="json"),
                    None,
                    method.transport,
                )
        return list(dict.fromkeys(ids))

    async def delete_user_methods_audited(self, user_id: str, actor: str) -> int:
        """Delete all of a user's methods in one transaction, each with its audit row."""
        async with self._conn() as conn, conn.transaction():
            if await conn.fetchrow(self._q["user_for_update"], user_id) is None:
                raise NotFound(f"User {user_id!r} does not exist.")
            rows = await conn.fetch(api_queries()["api_methods_of_user_for_update"], user_id)
            for row in rows:
                method = ContactMethod.model_validate(dict(row))
                await conn.execute(self._q["delete_contact_method"], method.id)
                await self._audit(
                    conn,
                    actor,
                    "delete",
                    "contact_method",
                    method.id,
                    method.model_dump(mode="json"),
                    None,
                    method.transport,
                )
        return len(rows)

    async def sync_methods(
        self,
        user_id: str,
        wanted: Sequence[tuple[NewContactMethod, str | None]],
        actor: str,
    ) -> SyncResult:
        """Make the user's methods exactly ``wanted`` in one transaction. A method
        matched by external id, else by transport and value, keeps its id,
        verification and mute state; the rest are created or deleted."""
        result = SyncResult()
        async with self._conn() as conn, conn.transaction():
            if await conn.fetchrow(self._q["user_for_update"], user_id) is None:
                raise NotFound(f"User {user_id!r} does not exist.")
            rows = await conn.fetch(api_queries()["api_methods_of_user_for_update"], user_id)
            current = [ContactMethod.model_validate(dict(r)) for r in rows]
            by_external = {m.external_id: m for m in current if m.external_id}
            by_value = {(m.transport, m.value): m for m in current}
            kept: dict[str, tuple[ContactMethod, NewContactMethod, str | None]] = {}
            fresh: list[tuple[NewContactMethod, str | None]] = []
            for new, external_id in wanted:
                match = by_external.get(external_id) if external_id else None
                match = match or by_value.get((new.transport, new.value))
                if match is None or match.id in kept or match.transport != new.transport:
                    fresh.append((new, external_id))
                else:
                    kept[match.id] = (match, new, external_id)
            for method in current:
                if method.id not in kept:
                    await conn.execute(self._q["delete_contact_method"], method.id)
                    await self._audit(
                        conn,
                        actor,
                        "delete",
                        "contact_method",
                        method.id,
                        method.model_dump(mode="json"),
                        None,
                        method.transport,
                    )
                    result.deleted.append(method.id)
            for method, new, external_id in kept.values():
                target = _synced(method, new, external_id)
                if target == {k: getattr(method, k) for k in _SYNCED}:
                    result.unchanged.append(method.id)
                    continue
                if target["value"] != method.value:
                    target["verified"] = False
                await self._rewrite(conn, method, target, actor)
                result.updated.append(method.id)
            for new, external_id in fresh:
                created = await self._insert(
                    conn, replace(new, user_id=user_id), external_id, actor
                )
                result.created.append(created.id)
        return result

    async def _rewrite(
        self, conn: asyncpg.Connection, method: ContactMethod, changes: dict[str, Any], actor: str
    ) -> None:
        target = ContactMethod.model_validate({**method.model_dump(), **changes})
        if target.is_primary:
            await conn.execute(
                self._q["clear_primary"], target.user_id, target.transport, target.id
            )
        row = await conn.fetchrow(
            api_queries()["api_change_contact_method"],
            target.id,
            target.value,
            target.label,
            target.is_primary,
            target.verified,
            target.disabled,
            target.muted,
            target.mute_until,
            target.suppress_up,
            target.suppress_down,
            target.suppress_first,
            target.suppress_diagnostic,
            target.suppress_all,
            target.min_severity,
            dict(target.metadata),
            list(target.tags),
            target.webhook_method,
            dict(target.webhook_headers),
            dict(target.webhook_query),
            target.webhook_body,
            target.external_id,
        )
        await self._audit(
            conn,
            actor,
            "update",
            "contact_method",
            method.id,
            method.model_dump(mode="json"),
            ContactMethod.model_validate(dict(row)).model_dump(mode="json"),
            method.transport,
        )


def _synced(
    method: ContactMethod, new: NewContactMethod, external_id: str | None
) -> dict[str, Any]:
    return {
        "value": new.value,
        "label": new.label,
        "is_primary": new.is_primary,
        "webhook_method": new.webhook_method,
        "webhook_headers": dict(new.webhook_headers),
        "webhook_query": dict(new.webhook_query),
        "webhook_body": new.webhook_body,
        "metadata": dict(new.metadata),
        "tags": tuple(new.tags),
        "external_id": external_id,
    }
