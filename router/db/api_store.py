"""The directory writes ``router api`` and ``router contacts update`` need beyond
:class:`router.db.store.PgStore`: a method's value and webhook settings changed,
writes that first check the caller's version (``If-Match``), idempotent answers,
and the audit log. Its SQL lives in ``sql/api.sql``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Self

import asyncpg

from router.db import sql
from router.db.store import PgStore
from router.directory import addresses
from router.directory.models import ContactMethod, User
from router.errors import Conflict, NotFound, PreconditionFailed

#: A check of the stored record against the version the caller read (If-Match).
Expect = Callable[[Any], bool] | None

#: The fields of a method whose values are addresses, masked in the audit log.
_ADDRESS_FIELDS = ("value",)


@cache
def api_queries() -> dict[str, str]:
    """The named queries of ``sql/api.sql``."""
    return sql.parse_queries(resources.files(sql.__name__).joinpath("api.sql").read_text())


def audit_fields(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, transport: str | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The fields that differ between ``before`` and ``after``, addresses masked."""
    keys = sorted(set(before or {}) | set(after or {}))
    changed = [k for k in keys if (before or {}).get(k) != (after or {}).get(k)]
    changed = [k for k in changed if k not in ("updated_at", "created_at")]

    def pick(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if record is None:
            return None
        out = {}
        for key in changed:
            value = record.get(key)
            if key in _ADDRESS_FIELDS and isinstance(value, str):
                value = addresses.mask(transport, value)
            elif key == "address" and isinstance(value, str):
                value = addresses.mask(None, value)
            out[key] = value
        return out

    return pick(before), pick(after)


class ApiStore(PgStore):
    """:class:`PgStore` with the API's writes; each one writes its audit row in its
    own transaction, naming ``actor``."""

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> Self:
        """Open a pool (see :meth:`PgStore.connect`)."""
        store = await super().connect(url, min_size=min_size, max_size=max_size)
        assert isinstance(store, cls)
        return store

    async def _audit(
        self,
        conn: asyncpg.Connection,
        actor: str,
        action: str,
        entity: str,
        entity_id: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
        transport: str | None = None,
    ) -> None:
        old, new = audit_fields(before, after, transport)
        await conn.execute(
            api_queries()["api_write_audit"],
            actor,
            action,
            entity,
            entity_id,
            json.loads(json.dumps(old, default=str)) if old is not None else None,
            json.loads(json.dumps(new, default=str)) if new is not None else None,
        )

    async def create_user(self, user: Mapping[str, Any], actor: str) -> User:
        """Create a user with every field given; :class:`Conflict` if the id is taken."""
        draft = User.model_validate(
            {
                "created_at": datetime.now().astimezone(),
                **user,
                "updated_at": datetime.now().astimezone(),
            }
        )
        async with self._conn() as conn, conn.transaction():
            if await conn.fetchrow(self._q["get_user"], draft.id) is not None:
                raise Conflict(f"User {draft.id!r} already exists.")
            row = await conn.fetchrow(
                api_queries()["api_insert_user"],
                draft.id,
                draft.name,
                draft.timezone,
                draft.quiet_hours_start,
                draft.quiet_hours_end,
                draft.quiet_bypass,
                list(draft.channel_order),
                draft.delivery_mode,
                draft.quiet_action,
                draft.external_id,
            )
            created = User.model_validate(dict(row))
            await self._audit(
                conn, actor, "create", "user", created.id, None, created.model_dump(mode="json")
            )
        return created

    async def change_user(
        self, user_id: str, changes: Mapping[str, Any], actor: str, expect: Expect = None
    ) -> User:
        """Apply ``changes`` if the stored user passes ``expect``; :class:`PreconditionFailed`
        if not, :class:`NotFound` if there is none."""
        async with self._conn() as conn, conn.transaction():
            row = await conn.fetchrow(self._q["user_for_update"], user_id)
            if row is None:
                raise NotFound(f"User {user_id!r} does not exist.")
            current = User.model_validate(dict(row))
            if expect is not None and not expect(current):
                raise PreconditionFailed(
                    f"User {user_id!r} changed since you read it; read it again (GET) and retry."
                )
            user = User.model_validate({**current.model_dump(), **changes})
            row = await conn.fetchrow(
                self._q["update_user"],
                user.id,
                user.name,
                user.timezone,
                user.quiet_hours_start,
                user.quiet_hours_end,
                user.quiet_bypass,
                list(user.channel_order),
                user.delivery_mode,
                user.quiet_action,
            )
            if user.external_id != current.external_id:
                row = await conn.fetchrow(
                    api_queries()["api_set_user_external_id"], user.id, user.external_id
                )
            updated = User.model_validate(dict(row))
            await self._audit(
                conn,
                actor,
                "update",
                "user",
                user_id,
                current.model_dump(mode="json"),
                updated.model_dump(mode="json"),
            )
        return updated

    async def remove_user(
        self, user_id: str, actor: str, *, cascade: bool = False, expect: Expect = None
    ) -> tuple[int, int]:
        """Delete a user (with ``cascade`` its methods and shifts too); the counts deleted."""
        async with self._conn() as conn, conn.transaction():
            row = await conn.fetchrow(self._q["user_for_update"], user_id)
            if row is None:
                raise NotFound(f"User {user_id!r} does not exist.")
            current = User.model_validate(dict(row))
            if expect is not None and not expect(current):
                raise PreconditionFailed(
                    f"User {user_id!r} changed since you read it; read it again (GET) and retry."
                )
            deps = await conn.fetchrow(self._q["user_dependents"], user_id)
            methods, shifts = int(deps["methods"]), int(deps["shifts"])
            if (methods or shifts) and not cascade:
                raise Conflict(
                    f"User {user_id!r} has {methods} contact method(s) and {shifts} shift(s); "
                    "delete them first or pass --cascade (cascade=true over the API)."
                )
            await conn.execute(self._q["delete_user_methods"], user_id)
            await conn.execute(self._q["delete_user_shifts"], user_id)
            await conn.execute(self._q["delete_user"], user_id)
            await self._audit(
                conn, actor, "delete", "user", user_id, current.model_dump(mode="json"), None
            )
        return methods, shifts

    async def _method_for_update(self, conn: asyncpg.Connection, method_id: str) -> ContactMethod:
        try:
            row = await conn.fetchrow(self._q["contact_method_for_update"], method_id)
        except asyncpg.DataError:
            row = None  # not a uuid
        if row is None:
            raise NotFound(f"Contact method {method_id!r} does not exist.")
        return ContactMethod.model_validate(dict(row))

    async def change_contact_method(
        self, method_id: str, changes: Mapping[str, Any], actor: str, expect: Expect = None
    ) -> ContactMethod:
        """Apply ``changes`` (any ContactMethod field but ids, transport and times; a
        ``value`` already checked by :mod:`router.directory.edits`) in one transaction.

        A value another of the user's methods has is a :class:`Conflict`; making a
        method primary clears the user's other primary of that transport."""
        async with self._conn() as conn, conn.transaction():
            current = await self._method_for_update(conn, method_id)
            if expect is not None and not expect(current):
                raise PreconditionFailed(
                    f"Contact method {method_id} changed since you read it; read it again "
                    "(GET) and retry."
                )
            method = ContactMethod.model_validate({**current.model_dump(), **changes})
            if method.value != current.value:
                taken = await conn.fetchval(
                    api_queries()["api_other_method_with_value"],
                    method.user_id,
                    method.transport,
                    method.value,
                    method.id,
                )
                if taken is not None:
                    raise Conflict(
                        f"User {method.user_id!r} already has that {method.transport} address "
                        f"as contact method {taken}."
                    )
            if method.is_primary:
                await conn.execute(
                    self._q["clear_primary"], method.user_id, method.transport, method.id
                )
            row = await conn.fetchrow(
                api_queries()["api_change_contact_method"],
                method.id,
                method.value,
                method.label,
                method.is_primary,
                method.verified,
                method.disabled,
                method.muted,
                method.mute_until,
                method.suppress_up,
                method.suppress_down,
                method.suppress_first,
                method.suppress_diagnostic,
                method.suppress_all,
                method.min_severity,
                dict(method.metadata),
                list(method.tags),
                method.webhook_method,
                dict(method.webhook_headers),
                dict(method.webhook_query),
                method.webhook_body,
                method.external_id,
            )
            updated = ContactMethod.model_validate(dict(row))
            await self._audit(
                conn,
                actor,
                "update",
                "contact_method",
                method_id,
                current.model_dump(mode="json"),
                updated.model_dump(mode="json"),
                current.transport,
            )
        return updated

    async def remove_contact_method(
        self, method_id: str, actor: str, expect: Expect = None
    ) -> None:
        """Delete one method if it passes ``expect``."""
        async with self._conn() as conn, conn.transaction():
            current = await self._method_for_update(conn, method_id)
            if expect is not None and not expect(current):
                raise PreconditionFailed(
                    f"Contact method {method_id} changed since you read it; read it again "
                    "(GET) and retry."
                )
            await conn.execute(self._q["delete_contact_method"], method_id)
            await self._audit(
                conn,
                actor,
                "delete",
                "contact_method",
                method_id,
                current.model_dump(mode="json"),
                None,
                current.transport,
            )

    async def audit_created_method(self, method: ContactMethod, actor: str) -> None:
        """Record the creation of ``method`` (its own short transaction)."""
        async with self._conn() as conn:
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

    async def audit(
        self, actor: str, action: str, entity: str, entity_id: str, after: Mapping[str, Any]
    ) -> None:
        """One audit row for a change made elsewhere (opt-outs)."""
        async with self._conn() as conn:
            await self._audit(conn, actor, action, entity, entity_id, None, after)

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
