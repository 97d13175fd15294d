"""What ``router api`` takes: request bodies with the names the resources use.

A resource's JSON is the model ``router contacts ... --json`` prints
(:class:`router.directory.models.User`, :class:`~router.directory.models.ContactMethod`);
these are the bodies that create and change them.
"""

from __future__ import annotations

from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from router.directory.models import NOTIFY_AFTER_MAX_SECONDS, ContactMethod, LocalTime, User
from schemas import Severity, Transport, WebhookMethod

USER_ID = r"^[^\s\x00-\x1f]{1,256}$"


def _zone(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            "is not an IANA time zone; give one such as Europe/Berlin or America/New_York"
        ) from None
    return value


class FieldError(BaseModel):
    """One bad field: a JSON pointer into the body (or a query parameter's name)."""

    pointer: str
    detail: str
    parameter: str | None = None


class ProblemDetails(BaseModel):
    """An RFC 9457 problem (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def given(self) -> dict[str, Any]:
        """The fields the client sent (a ``null`` sent is given, as a clear)."""
        return {k: getattr(self, k) for k in self.model_fields_set}


class UserFields(_Body):
    """The settable fields of a user."""

    name: str | None = Field(default=None, max_length=256)
    timezone: str = Field(default="UTC", description="IANA zone; quiet hours are read in it.")
    quiet_hours_start: LocalTime | None = None
    quiet_hours_end: LocalTime | None = None
    quiet_bypass: Severity = "critical"
    quiet_action: Literal["defer", "drop"] = "defer"
    channel_order: tuple[Transport, ...] = ("sms", "email", "webhook")
    delivery_mode: Literal["all", "preferred"] = "all"
    external_id: str | None = Field(default=None, min_length=1, max_length=256)

    _tz = field_validator("timezone")(_zone)

    @field_validator("channel_order")
    @classmethod
    def _order(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("must list sms, email and webhook at most once each")
        return value


class NewUser(UserFields):
    """``POST /v1/users``: the new user's ``id`` and any settings."""

    id: str = Field(pattern=USER_ID, description="1 to 256 characters, no spaces.")


class UserPatch(_Body):
    """``PATCH /v1/users/{user_id}``: only the fields sent change."""

    name: str | None = Field(default=None, max_length=256)
    timezone: str | None = None
    quiet_hours_start: LocalTime | None = None
    quiet_hours_end: LocalTime | None = None
    quiet_bypass: Severity | None = None
    quiet_action: Literal["defer", "drop"] | None = None
    channel_order: tuple[Transport, ...] | None = Field(default=None, min_length=1)
    delivery_mode: Literal["all", "preferred"] | None = None
    external_id: str | None = Field(default=None, min_length=1, max_length=256)

    _tz = field_validator("timezone")(_zone)


class _Webhook(_Body):
    webhook_method: WebhookMethod | None = None
    webhook_headers: dict[str, str] | None = None
    webhook_query: dict[str, str] | None = None
    webhook_body: str | None = Field(default=None, max_length=65536)


class SyncedContactMethod(_Webhook):
    """One method of ``PUT /v1/users/{user_id}/contact-methods`` (the user implied)."""

    transport: Transport
    value: str = Field(min_length=1, max_length=2000)
    region: str | None = Field(
        default=None, description="ISO country code for a phone number in national format."
    )
    allow_landline: bool = Field(
        default=False, description="Accept a number that cannot take SMS (as --allow-landline)."
    )
    label: str | None = Field(default=None, max_length=256)
    is_primary: bool = False
    verified: bool = False
    metadata: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    external_id: str | None = Field(default=None, min_length=1, max_length=256)


class NewContactMethod(SyncedContactMethod):
    """``POST /v1/contact-methods``: the service assigns the ``id``."""

    user_id: str = Field(pattern=USER_ID)


class Batch(_Body):
    """``POST /v1/contact-methods/batch``."""

    items: list[NewContactMethod] = Field(min_length=1, max_length=1000)


class BatchResult(BaseModel):
    """One item's outcome under ``?partial=true``: 201 and the method, or a problem."""

    status: int
    item: ContactMethod | None = None
    problem: ProblemDetails | None = None


class BatchAnswer(BaseModel):
    """``POST /v1/contact-methods/batch``'s answer: the methods (all or nothing), or
    with ``?partial=true`` one result per item, in order."""

    items: list[ContactMethod] | None = None
    results: list[BatchResult] | None = None


class BatchDelete(_Body):
    """``POST /v1/contact-methods/batch-delete``."""

    ids: list[str] = Field(min_length=1, max_length=1000)


class Deleted(BaseModel):
    """The ids deleted."""

    deleted: list[str]


class SyncAnswer(BaseModel):
    """What ``PUT /v1/users/{user_id}/contact-methods`` did, by method id."""

    created: list[str]
    updated: list[str]
    deleted: list[str]
    unchanged: list[str]


class ContactMethodPatch(_Webhook):
    """``PATCH /v1/contact-methods/{id}``: only the fields sent change; a new ``value``
    is checked like a new method's and resets ``verified``."""

    value: str | None = Field(default=None, min_length=1, max_length=2000)
    region: str | None = None
    allow_landline: bool = False
    label: str | None = Field(default=None, max_length=256)
    is_primary: bool | None = None
    verified: bool | None = None
    disabled: bool | None = None
    muted: bool | None = None
    mute_until: AwareDatetime | None = None
    suppress_up: bool | None = None
    suppress_down: bool | None = None
    suppress_first: bool | None = None
    suppress_diagnostic: bool | None = None
    suppress_all: bool | None = None
    min_severity: Severity | None = None
    notify_after_seconds: int | None = Field(
        default=None,
        ge=0,
        le=NOTIFY_AFTER_MAX_SECONDS,
        description="Tell this method only this long after a page, if it is still open "
        "(escalation); 0 or null: at once.",
    )
    metadata: dict[str, str] | None = None
    tags: list[str] | None = None
    external_id: str | None = Field(default=None, min_length=1, max_length=256)


class MuteBody(_Body):
    """``POST .../mute``: until cleared, or until ``until``."""

    until: AwareDatetime | None = None


class ConfirmBody(_Body):
    """``POST .../confirm``: the code the method received."""

    code: str = Field(min_length=1, max_length=32)


class NewOptOut(_Body):
    """``POST /v1/opt-outs``."""

    transport: Literal["sms", "email"]
    address: str = Field(min_length=1, max_length=320)
    region: str | None = None


class OptOut(BaseModel):
    """An address on the opt-out list."""

    transport: str
    address: str


class UserPage(BaseModel):
    """One page of users."""

    items: list[User]
    next_cursor: str | None


class ContactMethodPage(BaseModel):
    """One page of contact methods."""

    items: list[ContactMethod]
    next_cursor: str | None


class Count(BaseModel):
    """How many match."""

    count: int


class VerificationSent(BaseModel):
    """A code is on its way."""

    id: str
    expires_at: AwareDatetime
