"""Publishing a batch's output: every acknowledgement observed, each failure tied to its record.

The handler turns each consumed record into messages (jobs, decisions, or a
dead letter), each an :class:`Outgoing` that knows which record it came from
and an identity that is the same on every attempt at the batch. :func:`deliver`
sends them all, waits for every acknowledgement, and sorts failures in two:

- **refused**: the broker (or the client, before sending) will never take this
  message as it is, e.g. it is too large. Retrying changes nothing, so the
  record it came from is handled on its own (sent to the DLQ, cut to fit).
- **outage**: anything else (broker unreachable, timeouts, leader moves).
  The batch is retried; messages already acknowledged are remembered in
  ``acked`` and not sent again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from aiokafka.errors import (
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)

#: Errors that say "never this message", as opposed to "not now".
REFUSALS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
)

Identity = tuple[str, int, int, int]


class Publisher(Protocol):
    """Sends one message; returns something to await for the broker's acknowledgement."""

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: dict[str, str]
    ) -> Awaitable[Any] | None: ...


class Outgoing(NamedTuple):
    """One message to publish, and the consumed record (by batch index) it is for.
    A named tuple: six are made for every routed event."""

    topic: str
    value: bytes
    key: bytes | None
    headers: dict[str, str]
    origin: int
    identity: Identity  # (source topic, partition, offset, n-th output of that record)


@dataclass
class Delivery:
    """What happened to a batch's messages."""

    refused: dict[int, BaseException] = field(default_factory=dict)  # origin -> first refusal
    outage: BaseException | None = None


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` means the message will never be accepted as it is."""
    return isinstance(error, REFUSALS)


async def deliver(publisher: Publisher, messages: list[Outgoing], acked: set[Identity]) -> Delivery:
    """Send every message not in ``acked``; add those acknowledged now to it.

    Waits for every acknowledgement before returning, so no failure goes
    unobserved and a broker outage is one result, not one per message.
    """
    result = Delivery()
    waiting: list[tuple[Outgoing, Awaitable[Any]]] = []
    for message in messages:
        if message.identity in acked:
            continue
        try:
            ack = await publisher.send(
                message.topic, message.value, key=message.key, headers=message.headers
            )
        except Exception as error:  # the client refused it before sending
            _note(result, message, error)
            continue
        if ack is None:
            acked.add(message.identity)
        else:
            waiting.append((message, ack))
    outcomes = await asyncio.gather(*(ack for _, ack in waiting), return_exceptions=True)
    for (message, _), outcome in zip(waiting, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            _note(result, message, outcome)
        else:
            acked.add(message.identity)
    return result


def _note(result: Delivery, message: Outgoing, error: BaseException) -> None:
    if is_refusal(error):
        result.refused.setdefault(message.origin, error)
    elif result.outage is None:
        result.outage = error
