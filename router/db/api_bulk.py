"""Many contact methods in one transaction, for ``router api``: a batch created
all or nothing (or item by item), a batch deleted, and a user's whole set replaced
by the set another system holds (sync). Each change leaves its audit row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from router.db.api_store import ApiStore
from router.directory.models import ContactMethod
from router.directory.writes import NewContactMethod
from router.errors import NotFound, RouterError


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
                        results.append(await self._insert_method(conn, new, external_id, actor))
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
                rows = await conn.fetch(self._q["methods_for_update"], list(ids))
            except asyncpg.DataError:
                raise NotFound("An id in ids is not a contact method id.") from None
            found = {r["id"]: ContactMethod.model_validate(dict(r)) for r in rows}
            missing = [i for i in ids if i not in found]
            if missing:
                raise NotFound(f"Contact method {missing[0]} does not exist; nothing deleted.")
            for method in found.values():
                await self._delete_method(conn, method, actor)
        return list(dict.fromkeys(ids))

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
            current = await self._user_methods_for_update(conn, user_id)
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
                    await self._delete_method(conn, method, actor)
                    result.deleted.append(method.id)
            for method, new, external_id in kept.values():
                target = _synced(method, new, external_id)
                if target == {k: getattr(method, k) for k in _SYNCED}:
                    result.unchanged.append(method.id)
                    continue
                if target["value"] != method.value:
                    target["verified"] = False
                await self._rewrite_method(conn, method, target, actor)
                result.updated.append(method.id)
            for new, external_id in fresh:
                created = await self._insert_method(
                    conn, replace(new, user_id=user_id), external_id, actor
                )
                result.created.append(created.id)
        return result


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
