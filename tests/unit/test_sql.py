"""Named SQL blocks and migration files load as the store expects."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.db import sql
from router.delivery.trail import decision_rows
from schemas import Decision
from tests.conftest import T0


def test_blocks_are_split_by_name_and_keep_their_comments() -> None:
    parsed = sql.parse_queries("-- name: a\n-- why a\nSELECT 1;\n\n-- name: b\nSELECT 2;\n")
    assert parsed == {"a": "-- why a\nSELECT 1;", "b": "SELECT 2;"}


def test_a_name_defined_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        sql.parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_a_block_without_sql_is_an_error() -> None:
    with pytest.raises(ValueError, match="no SQL"):
        sql.parse_queries("-- name: a\n-- only a comment\n-- name: b\nSELECT 2;\n")


def test_a_statement_for_new_rows_only_drops_its_conflict_clauses_and_nothing_else() -> None:
    statement = (
        "-- on ON CONFLICT below\n"
        "WITH a AS (\n"
        "    INSERT INTO t (k) SELECT unnest($1::text[])\n"
        "    ON CONFLICT (k) DO UPDATE SET at = excluded.at\n"
        ")\n"
        "INSERT INTO u (k) VALUES ($2)\n"
        "ON CONFLICT (k) WHERE k IS NOT NULL DO NOTHING;"
    )
    assert sql.without_conflict_clauses(statement) == (
        "-- on ON CONFLICT below\n"
        "WITH a AS (\n"
        "    INSERT INTO t (k) SELECT unnest($1::text[])\n"
        ")\n"
        "INSERT INTO u (k) VALUES ($2)"
    )


def test_a_conflict_clause_sharing_its_line_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="its own line"):
        sql.without_conflict_clauses("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING;")


def test_the_ledger_statement_has_a_form_for_new_rows() -> None:
    new_rows = sql.without_conflict_clauses(sql.queries()["record_batch"])
    statements = [line for line in new_rows.splitlines() if not line.startswith("--")]
    assert not [line for line in statements if "CONFLICT" in line]
    assert sum("INSERT INTO" in line for line in statements) == 5


ROUTER = Path(sql.__file__).parents[2]
STORES = [
    "db/pool.py",
    "directory/store.py",
    "directory/manage.py",
    "directory/writes.py",
    "db/api_bulk.py",
    "routing/ledger.py",
    "delivery/store.py",
    "held/store.py",
    "schedules/store.py",
]


def test_every_query_the_stores_use_exists_and_every_query_is_used() -> None:
    used = set()
    for name in STORES:
        source = (ROUTER / name).read_text()
        found = {
            part.split('"]')[0] for part in source.replace("q[", "self._q[").split('self._q["')[1:]
        }
        assert found, f"{name} refers to queries by name"
        used |= found
    assert used <= set(sql.queries()), used - set(sql.queries())
    assert set(sql.queries()) - used == set(), "queries no store uses"


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in sql.migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert sql.latest_version() == versions[-1]


def test_the_repair_sweep_knows_an_unreachable_page_by_the_key_its_decision_is_written_with() -> (
    None
):
    decision = Decision.model_construct(
        event_id="E",
        user_id="U",
        contact_method_id=None,
        transport=None,
        outcome="skipped",
        reason="unreachable",
        job_id=None,
        decided_at=T0,
        deliver_at=None,
        digest_of=None,
        failover_of="j",
    )
    [row] = decision_rows(decision)
    assert row.dedup == "d|E|U||skipped|unreachable|"
    swept = "'d|' || f.event_id || '|' || f.user_id || '||skipped|unreachable|'"
    assert swept in sql.queries()["orphaned_failures"]
