"""``Decision``: one record per (event, user, contact method) the router considered."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.jobs import Transport

Outcome = Literal["sent", "skipped"]

Reason = Literal[
    "disabled",
    "unsafe_target",
    "opted_out",
    "unverified",
    "muted",
    "suppressed",
    "below_min_severity",
    "quiet_hours",
    "not_preferred",
    "rate_limited",
    "unknown_user",
    "no_contact_methods",
    "unknown_schedule",
    "no_one_on_call",
    "duplicate_event",
]

#: Every reason code with its meaning; the README's table is checked against this.
REASONS: dict[str, str] = {
    "disabled": "The contact method is disabled.",
    "unsafe_target": "The webhook URL points inside a network (loopback, private, link-local, "
    "metadata and similar addresses or names) or breaks the webhook URL rules.",
    "opted_out": "The address is on the opt-out list for its transport.",
    "unverified": "The method is not verified and ROUTER_REQUIRE_VERIFIED is true.",
    "muted": "The method is muted, or muted until a time still in the future.",
    "suppressed": "The method suppresses this event kind (or all kinds).",
    "below_min_severity": "The event is below the method's minimum severity.",
    "quiet_hours": "The event falls in the user's quiet hours and is below the bypass severity.",
    "not_preferred": "The user's delivery mode is preferred and another method was chosen.",
    "rate_limited": "The method already got its limit of jobs in the sliding window.",
    "unknown_user": "The event names a user the directory does not know.",
    "no_contact_methods": "The user exists but has no contact methods.",
    "unknown_schedule": "The event names a schedule the directory does not know.",
    "no_one_on_call": "The schedule exists but nobody is on call at the event's time.",
    "duplicate_event": "The same event_id was already fully routed within the retention window.",
}


class Decision(BaseModel):
    """What the router did about one user's contact method for one event.

    Event-level and user-level outcomes (``unknown_user``, ``no_contact_methods``)
    carry a null ``contact_method_id`` and ``transport``.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, title="Decision")

    event_id: str
    user_id: str | None
    contact_method_id: str | None
    transport: Transport | None
    outcome: Outcome
    reason: Reason | None = Field(description="Null when sent; else one documented code.")
    job_id: str | None = Field(description="The job published, when sent.")
    decided_at: AwareDatetime

    @model_validator(mode="after")
    def _reason_matches_outcome(self) -> Decision:
        if self.outcome == "sent" and (self.reason is not None or self.job_id is None):
            raise ValueError("a sent decision has a job_id and no reason")
        if self.outcome == "skipped" and (self.reason is None or self.job_id is not None):
            raise ValueError("a skipped decision has a reason and no job_id")
        return self
