"""Named SQL blocks, loaded once from ``queries.sql``, and the ordered migrations.

A block starts with ``-- name: NAME`` and runs to the next such line. Comment
lines right after the name line document the block and are kept in the SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def parse_queries(text: str) -> dict[str, str]:
    """Split ``text`` into ``{name: sql}``; a repeated or empty block is an error."""
    matches = list(_NAME.finditer(text))
    queries: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        name = match.group(1)
        body = text[match.end() : end].strip()
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        if not any(line and not line.startswith("--") for line in body.splitlines()):
            raise ValueError(f"query {name!r} has no SQL")
        queries[name] = body
    return queries


@cache
def queries() -> dict[str, str]:
    """All named queries from ``queries.sql``."""
    return parse_queries(resources.files(__name__).joinpath("queries.sql").read_text())


def without_conflict_clauses(statement: str) -> str:
    """``statement`` less its ``ON CONFLICT`` clauses, each a line of its own.

    PostgreSQL checks every row for a conflict before inserting it (speculative
    insertion), and for the worker's ledger statement that is a third of what the
    server spends on it. New rows need no such check: ``router.routing.ledger``
    runs the statement this way first, and as written only when a row is there
    already. A clause sharing its line with SQL is an error, not a guess.
    """
    kept: list[str] = []
    for line in statement.splitlines():
        if line.lstrip().startswith("ON CONFLICT "):
            continue
        if "ON CONFLICT" in line and not line.lstrip().startswith("--"):
            raise ValueError(f"an ON CONFLICT clause must have its own line: {line.strip()!r}")
        kept.append(line)
    return "\n".join(kept)


@dataclass(frozen=True)
class Migration:
    """One ordered schema change."""

    version: int
    name: str
    sql: str


@cache
def migrations() -> tuple[Migration, ...]:
    """Every migration file, in version order; versions must be 1, 2, 3... without gaps."""
    folder = resources.files(__name__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration {migration.version:04d} breaks the sequence; expected {expected:04d}"
            )
    return tuple(found)


def latest_version() -> int:
    """The schema version this code needs."""
    return migrations()[-1].version
