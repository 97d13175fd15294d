"""Benchmark: import 100,000 contact methods from CSV with the real `router contacts import`.

Prints wall time and the import process's peak memory (max RSS), for a first
import (every row new), a re-import of the same file (every row unchanged) and
an export. Uses ROUTER_DATABASE_URL when set, else an embedded PostgreSQL.

    .venv/bin/python bench/import_contacts.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from router.db.migrate import migrate
from router.dev.embedded import EmbeddedPostgres


def write_csv(path: Path, rows: int) -> None:
    """``rows`` methods: for each user an email, a mobile-capable SMS number and a webhook."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["user_id", "transport", "value", "label", "is_primary", "tags", "metadata"]
        )
        for n in range(rows):
            user, kind = divmod(n, 3)
            if kind == 0:
                row = [f"user{user:06d}", "email", f"User{user:06d}@Example.com", "work", "true"]
            elif kind == 1:
                # NANP numbers in the 415-2xx exchanges: valid, "fixed line or mobile".
                number = f"+1 415 {200 + user // 10000:03d} {user % 10000:04d}"
                row = [f"user{user:06d}", "sms", number, "mobile", "true"]
            else:
                row = [
                    f"user{user:06d}",
                    "webhook",
                    f"https://hooks.example.com/u/{user}",
                    "",
                    "false",
                ]
            writer.writerow([*row, "oncall,bench", '{"source": "bench"}'])


def timed(label: str, args: list[str], env: dict[str, str]) -> None:
    """Run one command; print its wall time and its own peak RSS (from wait4)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(args, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode != 0:
        sys.exit(f"{label} failed:\n{stderr[-2000:]}")
    summary = stdout.strip().splitlines()[-1][:90] if stdout.strip() else ""
    peak_mib = usage.ru_maxrss / 1024  # KiB on Linux
    print(f"{label:<26} {elapsed:6.1f} s   peak RSS {peak_mib:5.0f} MiB   {summary}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        source = Path(tmp) / "contacts.csv"
        write_csv(source, args.rows)
        server = None
        url = os.environ.get("ROUTER_DATABASE_URL")
        if not url:
            server = EmbeddedPostgres(Path(tmp) / "pg").start()
            url = server.url
        try:
            asyncio.run(migrate(url))
            env = {**os.environ, "ROUTER_DATABASE_URL": url}
            cli = [sys.executable, "-m", "router", "contacts"]
            print(
                f"{args.rows} rows, {source.stat().st_size / 1e6:.1f} MB CSV, "
                f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
            )
            timed("import (all new)", [*cli, "import", str(source), "--create-users"], env)
            timed("import again (unchanged)", [*cli, "import", str(source)], env)
            timed("export csv", [*cli, "export", "--output", str(Path(tmp) / "out.csv")], env)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
