"""The directory as the pipeline sees it: users and their contact methods.

These models are what the store returns and what ``router contacts ... --json``
prints, so one shape serves the worker, the operator and the tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Annotated, Any, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema

from schemas import Severity, Transport, WebhookMethod

#: A local wall-clock time as stored (no offset): JSON Schema's ``format: time``
#: demands an offset, so the documents describe it by pattern instead.
LocalTime = Annotated[
    time,
    WithJsonSchema(
        {"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?$"}
    ),
]


class User(BaseModel):
    """A person who can be notified."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str | None = None
    timezone: str = Field(default="UTC", description="IANA zone; quiet hours are read in it.")
    quiet_hours_start: LocalTime | None = Field(default=None, description="Local start, inclusive.")
    quiet_hours_end: LocalTime | None = Field(default=None, description="Local end, exclusive.")
    quiet_bypass: Severity = Field(
        default="critical", description="Events at or above this severity ignore quiet hours."
    )
    quiet_action: Literal["defer", "drop"] = Field(
        default="defer",
        description="defer: pages in quiet hours are held and sent as a digest when the "
        "window ends; drop: they are skipped.",
    )
    channel_order: tuple[Transport, ...] = ("sms", "email", "webhook")
    delivery_mode: Literal["all", "preferred"] = "all"
    external_id: str | None = Field(
        default=None, description="Its id in the system it is synced from; unique."
    )
    created_at: AwareDatetime
    updated_at: AwareDatetime


#: The longest ``notify_after_seconds`` the API and ``router contacts`` set: a week.
NOTIFY_AFTER_MAX_SECONDS = 7 * 24 * 3600


class ContactMethod(BaseModel):
    """One way to reach a user: an email address, an E.164 number, or a webhook URL.

    The mute and suppress flags follow NodePing's per-address settings:
    ``muted`` mutes until cleared, ``mute_until`` mutes until that instant.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    user_id: str
    transport: Transport
    value: str = Field(description="Normalized: lower-cased email, E.164 number, or URL.")
    label: str | None = None
    is_primary: bool = False
    verified: bool = False
    disabled: bool = False
    muted: bool = False
    mute_until: AwareDatetime | None = None
    suppress_up: bool = False
    suppress_down: bool = False
    suppress_first: bool = False
    suppress_diagnostic: bool = False
    suppress_all: bool = False
    min_severity: Severity | None = None
    webhook_method: WebhookMethod | None = None
    webhook_headers: dict[str, str] = Field(default_factory=dict)
    webhook_query: dict[str, str] = Field(default_factory=dict)
    webhook_body: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict, description="Free-form key/value.")
    tags: tuple[str, ...] = ()
    notify_after_seconds: int = Field(
        default=0, ge=0, description="Told only this long after a page, if it is still open."
    )
    external_id: str | None = Field(
        default=None, description="Its id in the system it is synced from; unique."
    )
    created_at: AwareDatetime
    updated_at: AwareDatetime


class Shift(BaseModel):
    """Someone on call for a schedule from ``starts_at`` (inclusive) to ``ends_at`` (exclusive)."""

    model_config = ConfigDict(frozen=True)

    id: int
    schedule_id: str
    user_id: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class PlanSlot(Protocol):
    """A place that keeps one user's compiled routing plan with the rows it came from."""

    compiled: Any


@dataclass(frozen=True)
class Directory:
    """A snapshot of the users a batch of events names, with their methods.

    Methods are kept in creation order, which is the order the router
    considers them in.
    """

    users: Mapping[str, User] = field(default_factory=dict)
    methods: Mapping[str, tuple[ContactMethod, ...]] = field(default_factory=dict)
    #: (schedule id, instant) -> user ids on call then; absent for unknown schedules.
    on_call: Mapping[tuple[str, datetime], tuple[str, ...]] = field(default_factory=dict)
    #: (transport, normalized address) pairs on the opt-out list.
    opt_outs: frozenset[tuple[str, str]] = frozenset()
    #: Where routing may keep what it compiled from a user's rows
    #: (:mod:`router.routing.compiled`), by user id: the cache's entries, which live
    #: exactly as long as the rows they were read with. Empty without a cache.
    slots: Mapping[str, PlanSlot] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        users: Iterable[User],
        methods: Iterable[ContactMethod],
        on_call: Mapping[tuple[str, datetime], tuple[str, ...]] | None = None,
        opt_outs: Iterable[tuple[str, str]] = (),
    ) -> Directory:
        """Build a snapshot from rows in any order."""
        by_user: dict[str, list[ContactMethod]] = {}
        for method in methods:
            by_user.setdefault(method.user_id, []).append(method)
        return cls(
            users={u.id: u for u in users},
            methods={uid: tuple(sorted(ms, key=_creation_order)) for uid, ms in by_user.items()},
            on_call=dict(on_call or {}),
            opt_outs=frozenset(opt_outs),
        )

    def methods_of(self, user_id: str) -> tuple[ContactMethod, ...]:
        """The user's contact methods, oldest first (empty for an unknown user)."""
        return self.methods.get(user_id, ())


def _creation_order(method: ContactMethod) -> tuple[datetime, str]:
    return (method.created_at, method.id)


#: Columns of an import row, as the store's ``import_contact_methods`` takes them.
IMPORT_COLUMNS: tuple[str, ...] = (
    "user_id",
    "transport",
    "value",
    "label",
    "is_primary",
    "verified",
    "disabled",
    "muted",
    "mute_until",
    "suppress_up",
    "suppress_down",
    "suppress_first",
    "suppress_diagnostic",
    "suppress_all",
    "min_severity",
    "webhook_method",
    "webhook_headers",
    "webhook_query",
    "webhook_body",
    "metadata",
    "tags",
)
