"""Driver errors become the router's own: an outage is retried, never dead-lettered."""

from __future__ import annotations

import asyncpg
import pytest

from router.db.pool import translate_errors
from router.errors import StoreUnavailable


async def test_a_connection_the_server_ended_mid_query_is_an_outage() -> None:
    # What asyncpg raises when the pool resets a connection the server terminated.
    broken = asyncpg.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    )
    with pytest.raises(StoreUnavailable, match="Cannot use PostgreSQL"):
        async with translate_errors("postgresql://router:secret@db/router"):
            raise broken
