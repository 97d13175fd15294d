"""The cache of the directory's entries (:class:`router.directory.rows.Entry`) by user
id, and what a change notification names. Pure: the I/O around it is
:mod:`router.directory.cache`.

:class:`DirectoryCache` holds entries least recently used first out (recency kept
once it is more than half full), each for at most a TTL (or, for a directory read
whole, until it is read again), with an index of who holds each address (an
opt-out names an address) and the bound on how many compiled plans its entries
keep (:class:`router.directory.rows.Plans`);
:class:`Change` is what a ``router_directory`` notification says changed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from router.directory.rows import Address, Entry, Plans

#: How many entries keep a plan compiled on first use (about 0.6 KB each, so 6 MB): a
#: user paged again soon is routed by the kept plan, any other compiles it again. A plan
#: made as a directory read whole is read (a plain user's, about 0.1 KB) is not counted.
PLANS_KEPT = 10_000


@dataclass(frozen=True)
class Change:
    """What one notification says changed."""

    users: frozenset[str] = frozenset()
    addresses: frozenset[Address] = frozenset()
    everything: bool = False


def parse_change(payload: str) -> Change:
    """A ``router_directory`` payload; anything unreadable means "everything"."""
    try:
        data = json.loads(payload)
        if data.get("all"):
            return Change(everything=True)
        return Change(
            users=frozenset(str(u) for u in data.get("users") or ()),
            addresses=frozenset((str(t), str(a)) for t, a in data.get("addresses") or ()),
        )
    except (ValueError, TypeError, AttributeError):
        return Change(everything=True)


class DirectoryCache:
    """Entries by user id, least recently used first out, each for at most ``ttl``
    (``None``: until dropped by a change or read again). Recency is kept from the moment
    the cache is more than half full; before that, entries stay in the order they came."""

    def __init__(
        self,
        max_users: int,
        ttl_seconds: float | None,
        clock: Callable[[], float] = time.monotonic,
        max_plans: int = PLANS_KEPT,
    ) -> None:
        self.max_users = max_users
        self.ttl_seconds = ttl_seconds
        #: The entries with a compiled plan: at most ``max_plans``.
        self.plans = Plans(max_plans)
        self._clock = clock
        # A plain dict in recency order (a use moves the entry to the end, see get): an
        # OrderedDict's links would cost about 50 bytes more per entry.
        self._entries: dict[str, Entry] = {}
        # Who holds each address, by transport then address (no tuple kept per address):
        # one user id, or a set when several share it.
        self._by_address: dict[str, dict[str, str | set[str]]] = {}
        #: Bumped by every invalidation: a read that saw it change is not kept.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: str) -> Entry | None:
        """The entry if present and fresh (and then the most recently used, once the
        cache is more than half full)."""
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        if self.ttl_seconds is not None and self._clock() - entry.read_at >= self.ttl_seconds:
            self._drop(user_id)
            return None
        entries = self._entries
        if len(entries) * 2 > self.max_users:
            # Recency only matters to a cache that may fill: below half full (a directory
            # read whole sits there), a use leaves the order alone. Moving every entry
            # used to the end churned the dict of a whole directory into twice its size.
            entries[user_id] = entries.pop(user_id)
        return entry

    def put(self, user_id: str, entry: Entry) -> None:
        if user_id in self._entries:
            self._drop(user_id)
        user_id = sys.intern(user_id)
        self._entries[user_id] = entry
        entry.kept_by(self.plans)
        for transport, value in entry.addresses():
            index = self._by_address.setdefault(transport, {})
            holders = index.setdefault(value, user_id)
            if holders is user_id or holders == user_id:
                continue
            if isinstance(holders, str):
                index[value] = {holders, user_id}
            else:
                holders.add(user_id)
        while len(self._entries) > self.max_users:
            self._drop(next(iter(self._entries)))

    def invalidate(self, change: Change) -> None:
        """Forget what ``change`` names (everything, for a change that says so)."""
        self.generation += 1
        if change.everything:
            self.clear()
            return
        for user_id in change.users:
            self._drop(user_id)
        for address in change.addresses:
            holders = self._by_address.get(address[0], {}).get(address[1], ())
            for user_id in [holders] if isinstance(holders, str) else list(holders):
                self._drop(user_id)

    def clear(self) -> None:
        self.generation += 1
        for entry in self._entries.values():
            entry.kept_by(None)
        self._entries.clear()
        self._by_address.clear()
        self.plans.clear()

    def _drop(self, user_id: str) -> None:
        entry = self._entries.pop(user_id, None)
        if entry is None:
            return
        self.plans.dropped(entry)
        entry.kept_by(None)
        for transport, value in entry.addresses():
            index = self._by_address.get(transport, {})
            holders = index.get(value)
            if holders is None:
                continue
            if isinstance(holders, str):
                if holders == user_id:
                    del index[value]
                continue
            holders.discard(user_id)
            if len(holders) == 1:
                index[value] = holders.pop()
            elif not holders:
                del index[value]
