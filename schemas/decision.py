"""``Decision``: one record per (event, user, contact method) the router considered."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.jobs import Transport

Outcome = Literal["sent", "skipped", "deferred"]

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
    "expired",
    "method_deleted",
    "failover",
    "unreachable",
    "escalated",
    "unacknowledged",
    "unknown_policy",
    "notify_after",
    "acknowledged",
    "resolved",
]

#: Every reason code with its meaning; docs/topics-and-schemas.md's table is checked against this.
REASONS: dict[str, str] = {
    "disabled": "The contact method is disabled.",
    "unsafe_target": "The webhook URL points inside a network (loopback, private, link-local, "
    "metadata and similar addresses or names) or breaks the webhook URL rules, or one of its "
    "headers breaks the webhook header rules.",
    "opted_out": "The address is on the opt-out list for its transport.",
    "unverified": "The method is not verified and ROUTER_REQUIRE_VERIFIED is true.",
    "muted": "The method is muted, or muted until a time still in the future.",
    "suppressed": "The method suppresses this event kind (or all kinds).",
    "below_min_severity": "The event is below the method's minimum severity.",
    "quiet_hours": "The event falls in the user's quiet hours and is below the bypass severity: "
    "deferred to the window's end (the user's quiet action `defer`, the default), or dropped "
    "(`drop`).",
    "not_preferred": "The user's delivery mode is preferred and another method was chosen.",
    "rate_limited": "The method is at one of its transport's limits: the page is deferred and "
    "sent in a bundle as soon as every limit allows.",
    "unknown_user": "The event names a user the directory does not know.",
    "no_contact_methods": "The user exists but has no contact methods.",
    "unknown_schedule": "The event names a schedule the directory does not know.",
    "no_one_on_call": "The schedule exists but nobody is on call at the event's time.",
    "duplicate_event": "The same event_id was already fully routed within the retention window.",
    "expired": "A held page waited longer than ROUTER_HELD_MAX_AGE_SECONDS and was dropped.",
    "method_deleted": "A held page's contact method was deleted while the page waited.",
    "failover": "Sent (outcome sent) to the user's next method because an earlier job of this "
    "page failed permanently or got no status in time (failover_of names it).",
    "unreachable": "Every method of the user was tried for this page and none worked.",
    "escalated": "Sent (outcome sent) by a later step or round of the event's escalation "
    "policy: the page was not acknowledged in time (escalation_step, escalation_round).",
    "unacknowledged": "The escalation policy's last round ended and nobody acknowledged the "
    "page: one decision per user of the last step, and the page stops escalating.",
    "unknown_policy": "The event names an escalation policy the router does not know (or one "
    "without steps).",
    "notify_after": "The method waits this long after the page before it is told (its "
    "--notify-after): deferred until deliver_at, then sent if the page is still open.",
    "acknowledged": "The page was acknowledged before this method's turn came.",
    "resolved": "The page was resolved before this method's turn came.",
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
    deliver_at: AwareDatetime | None = Field(
        default=None, description="When a deferred page is due (deferred only)."
    )
    digest_of: list[str] | None = Field(
        default=None,
        description="For a digest or bundle job: the event ids it carries, oldest first.",
    )
    failover_of: str | None = Field(
        default=None,
        description="For reasons failover and unreachable: the failed job that led here.",
    )
    alert_key: str | None = Field(
        default=None, description="The alert: the event's dedup_key, else its event_id."
    )
    escalation_step: int | None = Field(
        default=None, description="For a page of an escalation policy: the step (1-based)."
    )
    escalation_round: int | None = Field(
        default=None, description="For a page of an escalation policy: the round (1-based)."
    )

    @model_validator(mode="after")
    def _reason_matches_outcome(self) -> Decision:
        if self.outcome == "sent" and (
            self.reason not in (None, "failover", "escalated") or self.job_id is None
        ):
            raise ValueError(
                "a sent decision has a job_id and no reason (or failover, or escalated)"
            )
        if self.outcome == "skipped" and (self.reason is None or self.job_id is not None):
            raise ValueError("a skipped decision has a reason and no job_id")
        if self.outcome == "deferred" and (
            self.reason not in ("quiet_hours", "rate_limited", "notify_after")
            or self.job_id is not None
            or self.deliver_at is None
        ):
            raise ValueError(
                "a deferred decision has reason quiet_hours, rate_limited or notify_after, a "
                "deliver_at "
                "and no job_id"
            )
        return self
