"""``router contacts import`` and ``export``: files in and out, with a progress bar.

Import validates every row (see :mod:`router.directory.bulk`) before one all-or-nothing
write; export pages through the directory in key order.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from router.cli.common import cli_actor, method_filter, run_with_store
from router.cli.values import settings
from router.db.api_bulk import BulkApiStore
from router.db.store import PgStore
from router.directory import bulk
from router.errors import InvalidValue


class Progress:
    """A one-line progress bar on a terminal's stderr; silent elsewhere."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.shown = label, max(total, 1), -1
        self.active = sys.stderr.isatty()

    def update(self, done: int) -> None:
        """Show ``done`` of ``total``, redrawing only when the percentage changes."""
        percent = min(100, done * 100 // self.total)
        if self.active and percent != self.shown:
            self.shown = percent
            bar = "#" * (percent // 4)
            print(f"\r{self.label} [{bar:<25}] {percent:3d}%", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the bar's line."""
        if self.active:
            print(file=sys.stderr)


def _drop_unknown_users(result: bulk.ImportPlan, existing: set[str]) -> None:
    missing = result.users - existing
    if not missing:
        return
    keep_lines, keep_rows = [], []
    for line, row in zip(result.lines, result.rows, strict=True):
        if row[0] in missing:
            result.errors.append(
                bulk.RowError(
                    line, f"user {row[0]!r} does not exist (add it, or pass --create-users)"
                )
            )
        else:
            keep_lines.append(line)
            keep_rows.append(row)
    result.lines, result.rows = keep_lines, keep_rows


def contacts_import(args: argparse.Namespace) -> None:
    """``router contacts import FILE``: validate every row, then write all (or the good ones)."""
    try:
        # newline="": every character as written; the format decides where records end.
        with open(args.file, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidValue("FILE", args.file, f"cannot be read as UTF-8 text ({error})") from None
    fmt = args.format or bulk.detect_format(args.file, text[:1024])
    total = text.count("\n") + 1
    progress = Progress("validating", total)
    records = []
    for record in bulk.read(text, fmt):
        records.append(record)
        if len(records) % 1000 == 0:
            progress.update(record[0])
    progress.update(total)
    progress.close()
    result = bulk.plan(
        records, allow_landline=args.allow_landline, policy=settings().target_policy()
    )

    async def action(store: BulkApiStore) -> None:
        if not args.create_users:
            _drop_unknown_users(result, await store.users_that_exist(result.users))
        result.errors.sort(key=lambda e: e.line)
        for error in result.errors:
            print(f"{args.file}:{error.line}: {error.message}", file=sys.stderr)
        if result.errors and not args.skip_invalid:
            raise InvalidValue(
                "FILE",
                args.file,
                f"has {len(result.errors)} invalid row(s), listed above; nothing was written "
                "(fix them, or pass --skip-invalid to write the valid rows)",
            )
        inserted, updated = await store.import_contact_methods(
            result.rows, create_users=args.create_users, actor=cli_actor()
        )
        unchanged = len(result.rows) - inserted - updated
        print(
            f"imported {len(result.rows)} row(s): {inserted} added, {updated} updated, "
            f"{unchanged} unchanged, {len(result.errors)} skipped as invalid"
        )

    run_with_store(action)


def contacts_export(args: argparse.Namespace) -> None:
    """``router contacts export``: every method (or the filtered ones), CSV or JSON lines."""
    fmt: bulk.Format = args.format

    async def write(store: PgStore, out: TextIO) -> None:
        out.write(bulk.export_header(fmt))
        after = None
        while page := await store.list_contact_methods(
            method_filter(args), after=after, limit=5000
        ):
            out.write(bulk.export_rows(page, fmt))
            last = page[-1]
            after = (last.user_id, last.transport, last.value)

    if not args.output:
        run_with_store(lambda store: write(store, sys.stdout))
        return
    with open(args.output, "w", newline="", encoding="utf-8") as out:
        run_with_store(lambda store: write(store, out))
