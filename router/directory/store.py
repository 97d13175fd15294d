"""The directory in PostgreSQL as the worker reads it: one snapshot per batch
(users, their methods, opt-outs, who is on call), opt-outs, and the connection
that LISTENs for changes (migration 0004's triggers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

import asyncpg

from router.db.pool import UNAVAILABLE, count_round_trip, translate_errors
from router.directory.addresses import mask
from router.directory.models import ContactMethod, Directory, Shift, User
from router.schedules.store import ScheduleStore

ScheduleLookup = tuple[str, datetime]


def method_from(row: Mapping[str, Any]) -> ContactMethod:
    return ContactMethod.model_validate(dict(row))


def user_from(row: Mapping[str, Any]) -> User:
    return User.model_validate(dict(row))


def shift_from(row: Mapping[str, Any]) -> Shift:
    return Shift.model_validate(dict(row))


#: The channel migration 0004's triggers announce directory changes on.
CHANGES_CHANNEL = "router_directory"


class DirectoryListener:
    """The notification connection: alive until closed or broken."""

    def __init__(self, conn: asyncpg.Connection, ping: str) -> None:
        self._conn = conn
        self._ping = ping

    def is_alive(self) -> bool:
        return not self._conn.is_closed()

    async def check(self) -> bool:
        """Whether the connection still answers (a silent network loss shows here)."""
        try:
            await self._conn.fetchval(self._ping, timeout=5.0)
        except (asyncpg.PostgresError, *UNAVAILABLE):
            return False
        return True

    async def close(self) -> None:
        if not self._conn.is_closed():
            try:
                await asyncio.wait_for(self._conn.close(), timeout=2.0)
            except (asyncpg.PostgresError, *UNAVAILABLE):
                self._conn.terminate()


class DirectoryStore(ScheduleStore):
    """What the worker reads from the directory (who is on call included, from the
    schedules' store), and the opt-out list."""

    async def listen(
        self, on_change: Callable[[str], None], on_lost: Callable[[], None]
    ) -> DirectoryListener:
        """A connection of its own LISTENing on ``router_directory`` (see migration 0004):
        ``on_change(payload)`` per notification, ``on_lost()`` when the connection ends."""
        async with translate_errors(self._url):
            conn = await asyncpg.connect(self._url, timeout=10)
        conn.add_query_logger(count_round_trip)
        listener = DirectoryListener(conn, self._q["ping"])

        def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            on_change(payload)

        def terminated(_conn: Any) -> None:
            on_lost()

        try:
            conn.add_termination_listener(terminated)
            await conn.add_listener(CHANGES_CHANNEL, notified)
        except BaseException:
            conn.terminate()
            raise
        return listener

    async def directory_for(
        self, user_ids: Collection[str], schedules: Collection[ScheduleLookup] = ()
    ) -> Directory:
        """One consistent snapshot for a batch, read in one read-only transaction."""
        lookups = list(dict.fromkeys(schedules))
        on_call: dict[ScheduleLookup, tuple[str, ...]] = {}
        async with (
            self._conn() as conn,
            conn.transaction(readonly=True, isolation="repeatable_read"),
        ):
            if lookups:
                on_call = await self.on_call_in(conn, lookups)
            ids = list(dict.fromkeys([*user_ids, *(u for us in on_call.values() for u in us)]))
            if not ids:
                return Directory(on_call=on_call)
            users = await conn.fetch(self._q["users_by_ids"], ids)
            methods = [
                method_from(r) for r in await conn.fetch(self._q["contact_methods_for_users"], ids)
            ]
            addresses = list({m.value for m in methods if m.transport in ("sms", "email")})
            opt_outs = (
                await conn.fetch(self._q["opt_outs_for_addresses"], addresses) if addresses else []
            )
        return Directory.of(
            (user_from(r) for r in users),
            methods,
            on_call=on_call,
            opt_outs=((r["transport"], r["address"]) for r in opt_outs),
        )

    async def user_ids(self, limit: int) -> list[str] | None:
        """Every user id when there are at most ``limit`` users, else None."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["user_ids_up_to"], limit + 1)
        return None if len(rows) > limit else [r["id"] for r in rows]

    async def add_opt_out(
        self, transport: str, address: str, source: str = "cli", actor: str | None = None
    ) -> None:
        """Put a normalized address on the opt-out list (no-op if already there); with
        ``actor``, a new entry writes its audit row in the same statement."""
        async with self._conn() as conn:
            await conn.execute(
                self._q["add_opt_out"], transport, address, source, actor, mask(transport, address)
            )

    async def remove_opt_out(self, transport: str, address: str, actor: str | None = None) -> bool:
        """Take an address off the list; whether it was there (audited with ``actor``)."""
        async with self._conn() as conn:
            removed = await conn.fetchval(
                self._q["remove_opt_out"], transport, address, actor, mask(transport, address)
            )
        return bool(removed)

    async def list_opt_outs(self) -> list[tuple[str, str]]:
        """Every (transport, address) on the list."""
        async with self._conn() as conn:
            rows = await conn.fetch(self._q["list_opt_outs"])
        return [(r["transport"], r["address"]) for r in rows]
