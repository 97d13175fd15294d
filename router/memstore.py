"""An in-memory :class:`router.store.Store` for unit tests and the pipeline's property tests.

It keeps the same rules as the schema (unknown user, duplicate value, one
primary per transport) so tests against it mean what they say; integration
tests still run against real PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime

from router.directory import ContactMethod, Directory, User
from router.errors import Conflict, NotFound, StoreUnavailable
from router.store import NewContactMethod


class InMemoryStore:
    """Users and contact methods in dicts. Set ``down = True`` to simulate an outage."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.methods: dict[str, ContactMethod] = {}
        self.down = False
        self.reads = 0

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("The in-memory store is marked down.")

    async def directory_for(self, user_ids: Collection[str]) -> Directory:
        """Same contract as :meth:`router.store.PgStore.directory_for`."""
        self._check()
        self.reads += 1
        wanted = set(user_ids)
        return Directory.of(
            (u for uid, u in self.users.items() if uid in wanted),
            (m for m in self.methods.values() if m.user_id in wanted),
        )

    async def add_user(self, user_id: str, name: str | None = None, timezone: str = "UTC") -> User:
        """Same contract as :meth:`router.store.PgStore.add_user`."""
        self._check()
        if user_id in self.users:
            raise Conflict(f"User {user_id!r} already exists.")
        now = datetime.now(UTC)
        user = User(id=user_id, name=name, timezone=timezone, created_at=now, updated_at=now)
        self.users[user_id] = user
        return user

    async def add_contact_method(self, new: NewContactMethod) -> ContactMethod:
        """Same contract as :meth:`router.store.PgStore.add_contact_method`."""
        self._check()
        if new.user_id not in self.users:
            raise NotFound(f"User {new.user_id!r} does not exist.")
        for m in self.methods.values():
            if (m.user_id, m.transport, m.value) == (new.user_id, new.transport, new.value):
                raise Conflict(
                    f"User {new.user_id!r} already has {new.transport} "
                    f"{new.value!r} as contact method {m.id}."
                )
        if new.is_primary:
            for mid, m in list(self.methods.items()):
                if m.user_id == new.user_id and m.transport == new.transport and m.is_primary:
                    self.methods[mid] = m.model_copy(update={"is_primary": False})
        now = datetime.now(UTC)
        method = ContactMethod(
            id=str(uuid.uuid4()),
            user_id=new.user_id,
            transport=new.transport,
            value=new.value,
            label=new.label,
            is_primary=new.is_primary,
            verified=new.verified,
            webhook_method=new.webhook_method,
            webhook_headers=dict(new.webhook_headers),
            webhook_query=dict(new.webhook_query),
            webhook_body=new.webhook_body,
            created_at=now,
            updated_at=now,
        )
        self.methods[method.id] = method
        return method

    async def set_disabled(self, method_id: str, disabled: bool) -> None:
        """Same contract as :meth:`router.store.PgStore.set_disabled`."""
        self._check()
        if method_id not in self.methods:
            raise NotFound(f"Contact method {method_id} does not exist.")
        self.replace(self.methods[method_id].model_copy(update={"disabled": disabled}))

    def replace(self, method: ContactMethod) -> None:
        """Overwrite a stored method (tests use this to set mute, disabled, ...)."""
        self.methods[method.id] = method
