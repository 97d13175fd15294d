"""``Decision``: one record per (event, user, contact method) the router considered."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.jobs import Transport

Outcome = Literal["sent", "skipped"]

Reason = Literal[
    "unknown_user",
    "no_contact_methods",
    "disabled",
    "unknown_schedule",
]

#: Every reason code with its meaning; the README's table is checked against this.
REASONS: dict[str, str] = {
    "unknown_user": "The event names a user the directory does not know.",
    "no_contact_methods": "The user exists but has no contact methods.",
    "disabled": "The contact method is disabled.",
    "unknown_schedule": "The event names a schedule the directory does not know.",
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
