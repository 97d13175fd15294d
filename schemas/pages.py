"""Pages answered: ``PageAck`` on pages.acks, ``InboundSms`` on deliveries.replies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

AckAction = Literal["ack", "resolve"]

#: No NUL: an alert key, a user id and a source are written to PostgreSQL as text.
_Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=256, pattern=r"^[^\x00]+$"),
]


class PageAck(BaseModel):
    """Someone acknowledged or resolved a page. Key: ``alert_key``.

    Produced by ``router ack``, by the ack link ``router ingest`` serves and by an SMS
    reply; implied by an ``up`` event with the page's alert key. Acknowledging stops
    every later escalation step and every ``notify_after`` send of the page; doing it
    twice, or after the page closed, changes nothing.
    """

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, title="PageAck")

    alert_key: _Text = Field(description="The page: its event's dedup_key, else its event_id.")
    user_id: _Text | None = Field(
        default=None, description="Who answered; null for an upstream resolve."
    )
    action: AckAction = Field(description="ack stops the escalation; resolve closes the page.")
    source: _Text = Field(description="Where it came from: cli, link, sms, event, or a name.")
    at: AwareDatetime = Field(description="When it was answered.")


class InboundSms(BaseModel):
    """A text message a user sent back, as the SMS delivery worker received it.

    Key: the sender's number. The router reads ``<code>A`` (acknowledge) and
    ``<code>R`` (resolve), any case, spaces allowed, where the code is a job's
    ``reply_code``; ``STOP`` puts the number on the opt-out list.
    """

    model_config = ConfigDict(
        extra="ignore", strict=True, frozen=True, title="InboundSms", populate_by_name=True
    )

    from_: Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{1,14}$")] = Field(
        alias="from", description="The sender's number in E.164."
    )
    text: Annotated[str, StringConstraints(max_length=2_000)]
    at: AwareDatetime
    provider_message_id: Annotated[str, StringConstraints(max_length=256)] | None = None
