"""Benchmark: the instructions the worker's batch path executes per alert, counted by valgrind.

``bench/handler_cpu.py`` measures CPU time, which moves with the machine: on a shared
machine one tree's runs differed by a quarter within minutes (2026-12-04). An
instruction count does not: the same code, inputs and environment execute the same
instructions whatever else the machine is doing, so two trees can be told apart by a
change of a few percent, in one run of each. It is not time (a cache miss costs more
than an instruction), so a change that moves work rather than removing it still needs
``handler_cpu.py`` or the throughput benchmark's sitting.

How: ``Worker.route`` and ``Worker.record`` over batches of 500 alerts, as
``handler_cpu.py`` runs them (the same alerts, users, directory read whole, a producer
that builds and compresses each record batch), in a process under ``valgrind
--tool=cachegrind --cache-sim=no``, twice: over ``--batches`` batches and over
``--batches`` plus ``--more``, each on a database of its own. The difference is the
instructions of ``--more`` batches alone, without the start (imports, seeding, the
directory's load, the first batches); PostgreSQL runs in its own processes, not
counted. Printed: ``instructions_per_event`` (thousands, ``k``) and both totals.

The same is counted for the throughput benchmark's reference loop's work
(``handler_cpu.reference``: the same alerts, published through the same publisher),
so the gap between the two is measured without the machine's noise too:
``reference_instructions_per_event_k`` and ``reference_instructions``.

Needs valgrind (Debian: ``apt-get install valgrind``). Uses an embedded PostgreSQL
unless ROUTER_DATABASE_URL is set (its user then needs CREATEDB). To compare two trees,
run it in each with ``PYTHONPATH=TREE``.

    .venv/bin/python bench/instructions.py [--users 1000] [--batches 2] [--more 4] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import uuid
from typing import Any

import asyncpg
from handler_cpu import BATCH, alerts, batch_worker, database, reference
from throughput import database_beside

from router.logging import configure

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


async def route_batches(url: str, users: int, batches: int, loop: str = "router") -> None:
    """The counted work: ``batches`` batches routed and recorded on the database ``url``;
    or, for ``loop`` ``reference``, the reference loop's work over the same alerts."""
    async with batch_worker(url, users) as (worker, publisher):
        if loop == "reference":
            await reference(publisher, users, batches)
            return
        rnd = random.Random(7)
        for n in range(batches):
            result = await worker.route(alerts(n * BATCH, users, rnd))
            await worker.record(result)
            assert result.jobs == 3 * BATCH, f"batch {n}: {result.jobs} jobs"


async def new_database(url: str) -> str:
    """A database of its own on ``url``'s server: its URL."""
    return await database_beside(url, f"router_instructions_{uuid.uuid4().hex[:12]}")


def database_to_count_in(url: str) -> str:
    """:func:`new_database`, or the run stopped with a line that says why."""
    try:
        return asyncio.run(new_database(url))
    except (OSError, asyncpg.PostgresError) as error:
        raise SystemExit(
            f"cannot make a database to count in on ROUTER_DATABASE_URL's server "
            f"(its user needs CREATEDB): {error}"
        ) from None


def counted(url: str, users: int, batches: int, loop: str = "router") -> int:
    """The instructions of a process routing ``batches`` batches on a new database (or
    doing the reference loop's work over them: ``loop``)."""
    database = database_to_count_in(url)
    done = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--inner",
            "--users",
            str(users),
            "--batches",
            str(batches),
            "--loop",
            loop,
        ],
        env={**os.environ, "ROUTER_DATABASE_URL": database},
        capture_output=True,
        text=True,
        check=False,
    )
    found = _REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"the counted run failed (exit code {done.returncode}):\n{done.stderr}")
    return int(found.group(1).replace(",", ""))


def measure(url: str, users: int, batches: int, more: int) -> dict[str, Any]:
    few = counted(url, users, batches)
    many = counted(url, users, batches + more)
    reference_few = counted(url, users, batches, "reference")
    reference_many = counted(url, users, batches + more, "reference")
    return {
        "instructions_per_event_k": round((many - few) / (more * BATCH) / 1000, 1),
        "instructions": {str(batches): few, str(batches + more): many},
        "reference_instructions_per_event_k": round(
            (reference_many - reference_few) / (more * BATCH) / 1000, 1
        ),
        "reference_instructions": {
            str(batches): reference_few,
            str(batches + more): reference_many,
        },
        "users": users,
        "batches": batches,
        "more": more,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000, help="up to 100000")
    parser.add_argument("--batches", type=int, default=2, help="of 500 alerts, not counted")
    parser.add_argument("--more", type=int, default=4, help="batches counted")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=("router", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.users < 1:
        parser.error("--users must be at least 1")
    if args.batches < 1 or args.more < 1:
        parser.error("--batches and --more must be at least 1")
    configure("json", "WARNING")  # as the other benchmarks run the worker
    if args.inner:
        counted_on = os.environ["ROUTER_DATABASE_URL"]
        asyncio.run(route_batches(counted_on, args.users, args.batches, args.loop or "router"))
        return
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    with database() as url:
        figures = measure(url, args.users, args.batches, args.more)
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"{figures['instructions_per_event_k']}k instructions an event, the reference "
            f"loop's work {figures['reference_instructions_per_event_k']}k "
            f"({args.more} batches of {BATCH} alerts counted, {args.users} users)"
        )


if __name__ == "__main__":
    main()
