"""Driver errors become the router's own: an outage is retried, never dead-lettered."""

from __future__ import annotations

import asyncpg
import pytest

from router.db.pool import translate_errors
from router.errors import StoreError, StoreUnavailable


async def test_a_connection_the_server_ended_mid_query_is_an_outage() -> None:
    # What asyncpg raises when the pool resets a connection the server terminated.
    broken = asyncpg.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    )
    with pytest.raises(StoreUnavailable, match="Cannot use PostgreSQL"):
        async with translate_errors("postgresql://router:secret@db/router"):
            raise broken


@pytest.mark.parametrize(
    "refusal",
    [
        asyncpg.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'),
        asyncpg.UntranslatableCharacterError("unsupported Unicode escape sequence"),
    ],
)
async def test_a_nul_byte_postgresql_cannot_take_is_named_as_such(refusal: Exception) -> None:
    # Refused for the data, not an outage: the message says what to take out.
    with pytest.raises(StoreError, match="holds a NUL byte") as raised:
        async with translate_errors("postgresql://router:secret@db/router"):
            raise refusal
    assert not isinstance(raised.value, StoreUnavailable)
