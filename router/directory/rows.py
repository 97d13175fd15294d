"""The directory as the worker keeps it in memory: compact rows, and the cache of them.

A user with three methods held as pydantic models costs about 6 KB; a whole
directory of 100,000 users would not fit a pod's memory that way. An
:class:`Entry` keeps each user and method as one tuple instead: the fields every
row has, interned where many rows share them, then only the fields that differ
from the model's defaults. The models are made again (without validation, the
rows were validated when read) only when a path asks for a user's (held pages,
failover; routing asks once per entry, to compile the user's plan, which the
entry then keeps in its ``compiled`` slot until a change drops the entry).

:class:`DirectoryCache` holds entries by user id, least recently used first out,
each for at most a TTL (or, for a directory read whole, until it is read again);
:class:`Change` is what a ``router_directory`` notification says changed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from router.directory.models import ContactMethod, Directory, User
from router.routing.encode import make

Address = tuple[str, str]
M = TypeVar("M", bound=BaseModel)
V = TypeVar("V")
Row = tuple[Any, ...]


#: Fields whose values many rows share (a transport, a zone, a user's id on each of
#: their methods and as the cache's key): held once, interned. Method ids, addresses
#: and names are unique to their row: interning them would only add an entry to the
#: interpreter's table for each.
_SHARED = frozenset(
    {
        "user_id",
        "transport",
        "timezone",
        "quiet_bypass",
        "quiet_action",
        "delivery_mode",
        "min_severity",
        "webhook_method",
        "label",
    }
)


def _interned(name: str, value: Any, shared: frozenset[str] = _SHARED) -> Any:
    return sys.intern(value) if name in shared and type(value) is str else value


class _Packer(Generic[M]):
    """Models of one class to compact rows and back: ``always`` first, then the
    (name, value) pairs of the other fields that are not at their default."""

    def __init__(
        self, model: type[M], always: tuple[str, ...], shared: frozenset[str] = _SHARED
    ) -> None:
        self._model = model
        self._always = always
        self._shared = shared
        self._optional = {
            name: info.get_default(call_default_factory=True)
            for name, info in model.model_fields.items()
            if name not in always
        }

    def pack(self, item: M, times: dict[Any, datetime] | None = None) -> Row:
        """``item`` as a row; ``times``: the instants already held by rows read with it
        (rows imported together share their timestamps: one object for all of them)."""
        fields = item.__dict__
        extras = tuple(
            (name, _interned(name, fields[name], self._shared))
            for name, default in self._optional.items()
            if fields[name] != default
        )
        values = [_interned(name, fields[name], self._shared) for name in self._always]
        if times is not None:
            for i in (-2, -1):  # created_at, updated_at
                at = values[i]
                values[i] = times.setdefault((at, at.tzinfo, at.fold), at)
        created, updated = values[-2], values[-1]
        if created == updated and created.utcoffset() == updated.utcoffset():
            values[-1] = created  # created_at == updated_at, written alike: one object
        return (*values, extras)

    def unpack(self, row: Row) -> M:
        values = dict(zip(self._always, row, strict=False))
        values.update(row[-1])
        return make(self._model, values)


_USERS = _Packer(User, ("id", "timezone", "created_at", "updated_at"), _SHARED | {"id"})
_METHODS = _Packer(
    ContactMethod, ("id", "user_id", "transport", "value", "verified", "created_at", "updated_at")
)


class Entry:
    """What the cache knows of one user id: the user (None: no such user), their
    methods in creation order, which of their addresses are opted out, and when
    it was read. Held as compact rows; ``user`` and ``methods`` make the models."""

    __slots__ = ("_methods", "_user", "compiled", "opted_out", "read_at")

    #: The user's compiled routing plan (:mod:`router.routing.compiled`), made on first
    #: use and dropped with the entry, so it is never older than the rows.
    compiled: Any

    def __init__(
        self,
        user: User | None,
        methods: tuple[ContactMethod, ...],
        opted_out: frozenset[Address],
        read_at: float,
        times: dict[Any, datetime] | None = None,
    ) -> None:
        self._user = _USERS.pack(user, times) if user is not None else None
        self._methods = tuple([_METHODS.pack(m, times) for m in methods])
        self.opted_out = opted_out or frozenset()
        self.read_at = read_at
        self.compiled = None

    @property
    def user(self) -> User | None:
        return _USERS.unpack(self._user) if self._user is not None else None

    @property
    def methods(self) -> tuple[ContactMethod, ...]:
        return tuple(_METHODS.unpack(row) for row in self._methods)

    def addresses(self) -> set[Address]:
        """The addresses an opt-out can name (webhooks cannot be opted out)."""
        return {(row[2], row[3]) for row in self._methods if row[2] != "webhook"}


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
    (``None``: until dropped by a change or read again)."""

    def __init__(
        self,
        max_users: int,
        ttl_seconds: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_users = max_users
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        # A plain dict in recency order (a use moves the entry to the end): an
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
        """The entry if present and fresh (and then most recently used)."""
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        if self.ttl_seconds is not None and self._clock() - entry.read_at >= self.ttl_seconds:
            self._drop(user_id)
            return None
        self._entries[user_id] = self._entries.pop(user_id)
        return entry

    def put(self, user_id: str, entry: Entry) -> None:
        if user_id in self._entries:
            self._drop(user_id)
        user_id = sys.intern(user_id)
        self._entries[user_id] = entry
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
        self._entries.clear()
        self._by_address.clear()

    def _drop(self, user_id: str) -> None:
        entry = self._entries.pop(user_id, None)
        if entry is None:
            return
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


def entries_from(directory: Directory, user_ids: Iterable[str], read_at: float) -> dict[str, Entry]:
    """One entry per id in ``user_ids``, from a directory read for (at least) them."""
    found = {}
    times: dict[Any, datetime] = {}
    for user_id in user_ids:
        methods = directory.methods_of(user_id)
        found[user_id] = Entry(
            user=directory.users.get(user_id),
            methods=methods,
            opted_out=frozenset(
                (m.transport, m.value)
                for m in methods
                if (m.transport, m.value) in directory.opt_outs
            ),
            read_at=read_at,
            times=times,
        )
    return found


class _Unpacked(Mapping[str, V]):
    """A user id -> model mapping over cached entries: each model made (without
    validation) only when asked for, so a batch routed by compiled plans makes none."""

    __slots__ = ("_entries", "_fresh", "_has", "_keys", "_made", "_unpack")

    def __init__(
        self,
        entries: Mapping[str, Entry],
        fresh: Mapping[str, V],
        has: Callable[[Entry], bool],
        unpack: Callable[[Entry], Any],
    ) -> None:
        self._entries = entries
        self._fresh = fresh
        self._unpack = unpack
        self._has = has
        self._keys = [k for k, e in entries.items() if k not in fresh and has(e)]
        self._keys += list(fresh)
        self._made: dict[str, V] = {}

    def __getitem__(self, key: str) -> V:
        made = self._made.get(key)
        if made is not None:
            return made
        if key in self._fresh:
            return self._fresh[key]
        entry = self._entries.get(key)
        if entry is None or not self._has(entry):
            raise KeyError(key)
        value: V = self._unpack(entry)
        self._made[key] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _user(entry: Entry) -> User | None:
    return entry.user


def _methods(entry: Entry) -> tuple[ContactMethod, ...]:
    return entry.methods


def merge(
    entries: Mapping[str, Entry],
    fresh: Directory | None,
    on_call: Mapping[tuple[str, datetime], tuple[str, ...]] | None = None,
    kept: Mapping[str, Entry] | None = None,
) -> Directory:
    """The batch's directory: cached entries plus what was read for it. The cached
    users and methods are made into models only when asked for; each entry (and each
    of ``kept``, the entries just made from ``fresh``) is where routing keeps the
    user's compiled plan."""
    opt_outs: set[Address] = set()
    for entry in entries.values():
        opt_outs |= entry.opted_out
    if fresh is not None:
        opt_outs |= fresh.opt_outs
    users: Mapping[str, User] = _Unpacked(
        entries, fresh.users if fresh else {}, lambda e: e._user is not None, _user
    )
    methods: Mapping[str, tuple[ContactMethod, ...]] = _Unpacked(
        entries, fresh.methods if fresh else {}, lambda e: bool(e._methods), _methods
    )
    return Directory(
        users=users,
        methods=methods,
        on_call=dict(on_call if on_call is not None else fresh.on_call if fresh else {}),
        opt_outs=frozenset(opt_outs),
        slots={**(kept or {}), **entries},
    )
