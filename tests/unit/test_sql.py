"""Named SQL blocks and migration files load as the store expects."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.db import sql


def test_blocks_are_split_by_name_and_keep_their_comments() -> None:
    parsed = sql.parse_queries("-- name: a\n-- why a\nSELECT 1;\n\n-- name: b\nSELECT 2;\n")
    assert parsed == {"a": "-- why a\nSELECT 1;", "b": "SELECT 2;"}


def test_a_name_defined_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        sql.parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_a_block_without_sql_is_an_error() -> None:
    with pytest.raises(ValueError, match="no SQL"):
        sql.parse_queries("-- name: a\n-- only a comment\n-- name: b\nSELECT 2;\n")


def test_every_query_the_store_uses_exists() -> None:
    room = Path(sql.__file__).parent.parent
    source = "".join(p.read_text() for p in (room / "store.py", room / "schedule_store.py"))
    used = {part.split('"]')[0] for part in source.split('self._q["')[1:]}
    assert used, "the store refers to queries by name"
    assert used <= set(sql.queries()), used - set(sql.queries())


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in sql.migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert sql.latest_version() == versions[-1]
