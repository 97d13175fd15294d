"""``router api`` (serve the directory over HTTP) and ``router audit`` (who changed
what in the directory)."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta

from router.cli.values import settings
from router.db.api_store import ApiStore
from router.errors import InvalidValue

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def api(args: argparse.Namespace) -> None:
    """``router api``."""
    from router.api.service import run_api

    asyncio.run(run_api(settings()))


def since(text: str, field: str = "--since") -> timedelta:
    """``30m``, ``24h``, ``7d`` as a duration."""
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not number.isdigit() or int(number) < 1:
        raise InvalidValue(field, text, "is a duration such as 30m, 24h or 7d")
    return timedelta(seconds=int(number) * _UNITS[unit])


def audit(args: argparse.Namespace) -> int:
    """``router audit``: directory changes, newest first."""
    start = datetime.now(UTC) - since(args.since) if args.since else None
    url = settings().database_url.get_secret_value()

    async def show() -> list[dict[str, object]]:
        store = await ApiStore.connect(url, min_size=1, max_size=1)
        try:
            await store.check_schema()
            return await store.list_audit(args.entity, args.id, start, args.limit)
        finally:
            await store.close()

    rows = asyncio.run(show())
    for row in rows:
        if args.json:
            print(json.dumps(row, default=str))
        else:
            print(
                f"{row['at']}  {row['actor']}  {row['action']:<7} {row['entity']} "
                f"{row['entity_id']}  {json.dumps(row['before'])} -> {json.dumps(row['after'])}"
            )
    return 0
