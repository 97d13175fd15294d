"""The directory as the worker keeps it in memory: compact rows, made into models again
on demand.

A user with three methods held as pydantic models costs about 6 KB; a whole
directory of 100,000 users would not fit a pod's memory that way. An
:class:`Entry` keeps each user and method as one tuple instead: the fields every
row has, interned where many rows share them, then only the fields that differ
from the model's defaults. The models are made again (without validation, the
rows were validated when read) only when a path asks for a user's (held pages,
failover; routing compiles a user's plan from the rows themselves when they are
plain, else from the models, and the entry keeps it in its ``compiled`` slot
until a change drops the entry or :class:`Plans` takes back one made on first use).

The cache that holds the entries by user id is :mod:`router.directory.lru`;
:class:`Plans` bounds how many of its entries keep a compiled plan.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
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


#: The fields every user row and every method row holds, in order, before its extras.
USER_FIELDS = ("id", "timezone", "created_at", "updated_at")
METHOD_FIELDS = ("id", "user_id", "transport", "value", "verified", "created_at", "updated_at")
_USERS = _Packer(User, USER_FIELDS, _SHARED | {"id"})
_METHODS = _Packer(ContactMethod, METHOD_FIELDS)


class Plans:
    """The entries holding a compiled plan, oldest first: at most ``most`` of them.

    A plan costs about 600 bytes a user, a tenth of the rows it is made from but
    not nothing: a directory read whole would gain 60 MB per 100,000 users once
    each had been paged. Past ``most``, the entry that got its plan longest ago
    gives it up (and compiles it again if it is paged again)."""

    __slots__ = ("_held", "most")

    def __init__(self, most: int) -> None:
        self.most = most
        # An OrderedDict gives its oldest in constant time: a dict, its front emptied
        # over and over, made each look for the oldest walk the slots freed before it.
        self._held: OrderedDict[Entry, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def kept(self, entry: Entry) -> None:
        held = self._held
        held[entry] = None
        held.move_to_end(entry)
        while len(held) > self.most:
            oldest, _ = held.popitem(last=False)
            oldest._compiled = None

    def dropped(self, entry: Entry) -> None:
        self._held.pop(entry, None)

    def clear(self) -> None:
        self._held.clear()


class Entry:
    """What the cache knows of one user id: the user (None: no such user), their
    methods in creation order, which of their addresses are opted out, and when
    it was read. Held as compact rows; ``user`` and ``methods`` make the models."""

    __slots__ = ("_compiled", "_methods", "_plans", "_user", "opted_out", "read_at")

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
        self._compiled: Any = None
        self._plans: Plans | None = None

    def kept_by(self, plans: Plans | None) -> None:
        """Count this entry's plan against ``plans`` from now on (None: no longer)."""
        self._plans = plans
        if plans is not None and self._compiled is not None:
            plans.kept(self)

    @property
    def compiled(self) -> Any:
        """The user's compiled routing plan (:mod:`router.routing.compiled`), made on
        first use (in a cache, one of the :class:`Plans` it keeps) or as the directory
        is read whole (:meth:`preset`), and dropped with the entry, so it is never older
        than the rows."""
        return self._compiled

    @compiled.setter
    def compiled(self, plan: Any) -> None:
        self._compiled = plan
        if self._plans is not None:
            if plan is None:
                self._plans.dropped(self)
            else:
                self._plans.kept(self)

    def preset(self, plan: Any) -> None:
        """Keep ``plan`` as the compiled plan without counting it against :class:`Plans`:
        a plan small enough to keep for every user of a directory read whole (made
        when it is read). A change drops it with the entry, as any other."""
        if self._plans is not None:
            self._plans.dropped(self)  # one counted before is not given up later
        self._compiled = plan

    @property
    def user(self) -> User | None:
        return _USERS.unpack(self._user) if self._user is not None else None

    @property
    def methods(self) -> tuple[ContactMethod, ...]:
        return tuple(_METHODS.unpack(row) for row in self._methods)

    @property
    def rows(self) -> tuple[Row | None, tuple[Row, ...]]:
        """The user's row and their methods' rows as kept, for a reader that needs no
        model: the values of :data:`USER_FIELDS` and :data:`METHOD_FIELDS` in order, then
        ``extras``, the ``(name, value)`` pairs of the fields not at their defaults."""
        return self._user, self._methods

    def addresses(self) -> set[Address]:
        """The addresses an opt-out can name (webhooks cannot be opted out)."""
        return {(row[2], row[3]) for row in self._methods if row[2] != "webhook"}


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
        self._keys: list[str] | None = None  # listed when first iterated: routing never does
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

    def _listed(self) -> list[str]:
        if self._keys is None:
            fresh, has = self._fresh, self._has
            self._keys = [k for k, e in self._entries.items() if k not in fresh and has(e)]
            self._keys += list(fresh)
        return self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._listed())

    def __len__(self) -> int:
        return len(self._listed())


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
