"""``ContactEvent``: opt-out and opt-in messages on the contacts.events topic."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class ContactEvent(BaseModel):
    """Put an address on the opt-out list, or take it off.

    An opt-out applies to every user's contact methods with that address.
    """

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, title="ContactEvent")

    type: Literal["opt_out", "opt_in"]
    transport: Literal["sms", "email"]
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320)]
    region: Annotated[str, StringConstraints(min_length=2, max_length=2)] | None = Field(
        default=None, description="ISO country code, when the phone number is in national form."
    )
