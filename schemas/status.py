"""``DeliveryStatus``: what delivery workers report about each job, on deliveries.status."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Status = Literal["sent", "delivered", "failed", "bounced", "rejected"]

#: Statuses that end a job without the page reaching anyone (when ``permanent``).
FAILURES: frozenset[str] = frozenset({"failed", "bounced", "rejected"})


class DeliveryStatus(BaseModel):
    """One report about one job. Key: ``job_id``.

    Send every report you have (``sent`` when the provider took it, ``delivered``
    when it confirms, ``failed``/``bounced``/``rejected`` when it gives up). A
    failure with ``permanent: true`` makes the router fail the page over to the
    user's next method (for ``error`` and ``critical`` pages); a permanent
    ``bounced`` email, or any SMS status with ``detail: "opt_out"`` (the
    recipient sent STOP), puts the address on the opt-out list.
    """

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, title="DeliveryStatus")

    job_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="The job this is about."
    )
    status: Status
    permanent: bool = Field(
        default=False,
        description="For failures: true when retrying cannot help (unknown number, hard "
        "bounce, 410 Gone). A temporary failure changes nothing.",
    )
    detail: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        default=None,
        description='Free text from the provider; "opt_out" for an SMS recipient who opted out.',
    )
    at: AwareDatetime = Field(description="When it happened, RFC 3339 with offset.")
    provider_message_id: Annotated[str, StringConstraints(max_length=256)] | None = None
