"""``AlertEvent``: what upstream alerting systems publish on the alerts topic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

Kind = Literal["down", "up", "first", "diagnostic"]
Severity = Literal["critical", "error", "warning", "info"]

#: Severities in ascending order of urgency, for "at or above" comparisons.
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2, "critical": 3}

# No NUL: identifiers are looked up in PostgreSQL, whose text cannot hold one.
Identifier = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=256, pattern=r"^[^\x00]+$"),
]
#: An event's ``dedup_key``: its alert key (``alert_key()``), which PostgreSQL keeps as
#: text (a page's key) and reads from the trail's decisions as JSON (``router trail
#: --user``): no NUL either, which neither can hold.
DedupKey = Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00]*$")]


#: The instants the router computes with (quiet windows, rotations and rate
#: windows add days and weeks to them); ``occurred_at`` outside is refused.
OCCURRED_AT_MIN = datetime(1900, 1, 1, tzinfo=UTC)
OCCURRED_AT_MAX = datetime(9000, 1, 1, tzinfo=UTC)


class AlertEvent(BaseModel):
    """One alert to route: who must be told, and what to tell them.

    Exactly one of ``user_ids`` (the users named by the sender), ``schedule_id``
    (whoever is on call for that schedule) or ``escalation_policy_id`` (the
    policy's steps, one after another until someone acknowledges) says who.
    """

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, title="AlertEvent")

    event_id: Identifier = Field(
        description="Unique id of this event, chosen by the sender. Re-sending the same id "
        "yields the same job ids, so delivery workers can drop duplicates."
    )
    kind: Kind = Field(
        description="What happened: a check went down, came up, ran first, "
        "or produced a diagnostic."
    )
    severity: Severity
    user_ids: Annotated[list[Identifier], Field(min_length=1, max_length=1000)] | None = Field(
        default=None,
        description="Users to notify. Give exactly one of user_ids, schedule_id and "
        "escalation_policy_id.",
    )
    schedule_id: Identifier | None = Field(
        default=None, description="Notify whoever is on call for this schedule at occurred_at."
    )
    escalation_policy_id: Identifier | None = Field(
        default=None,
        description="Page this escalation policy's steps, one after another, until the page "
        "is acknowledged or resolved.",
    )
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    body: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    url: Annotated[str, StringConstraints(max_length=2_000)] | None = None
    source: Annotated[str, StringConstraints(max_length=256)] | None = None
    dedup_key: DedupKey | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    occurred_at: AwareDatetime | None = Field(
        default=None,
        description="RFC 3339 time with offset, from 1900-01-01 up to (not including) "
        "9000-01-01 UTC. When absent, the time the router received it.",
    )

    @field_validator("occurred_at")
    @classmethod
    def _computable(cls, value: datetime | None) -> datetime | None:
        if value is not None and not OCCURRED_AT_MIN <= value < OCCURRED_AT_MAX:
            raise ValueError(
                "must be from 1900-01-01 up to 9000-01-01 UTC; send the time the alert "
                "fired, with its offset"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one_audience(self) -> AlertEvent:
        given = (self.user_ids, self.schedule_id, self.escalation_policy_id)
        if sum(value is not None for value in given) != 1:
            raise ValueError(
                "give exactly one of user_ids (a non-empty list), schedule_id or "
                "escalation_policy_id"
            )
        return self

    def alert_key(self) -> str:
        """The alert this event is about: its ``dedup_key`` when it has one, else its
        ``event_id`` (a ``down`` and its later ``up`` share a key)."""
        return self.dedup_key or self.event_id

    def recipients(self) -> list[str]:
        """The named users, each once, in the order the sender gave them."""
        return list(dict.fromkeys(self.user_ids or []))
