"""Benchmark: the cache misses the worker's batch path takes per alert, simulated by
valgrind, with a large directory and a small one.

Target 4 of the hot path (100,000 users within 10% of 1,000) is the one a larger
directory costs: each alert reads one random user's rows, which at 100,000 users are
rarely in a cache. The throughput benchmark's ``users_ratio`` measures it in seconds,
which move with the machine (one code's rounds at 100,000 users gave 0.75 to 1.05 of
the 1,000-user router beside them). This counts it instead in valgrind's cache
simulation (``callgrind --cache-sim=yes``), which no other process on the machine
moves: the data reads and writes that miss the first-level cache (``d1``) and the
last-level cache (``ll_read``, ``ll_write``: a trip to memory) per alert, while
``Worker.route`` and ``Worker.record`` handle ``--counted`` batches of 500 alerts as
``bench/handler_cpu.py`` runs them (the same alerts, users, directory read whole, a
producer that builds and compresses each record batch). The count is switched on
(``callgrind_control``) only after the directory's load and ``--warm`` batches, and
off before the process ends, so neither the start nor the exit is in it.

It runs with ``--users`` and with ``--baseline-users``, each in a process and on a
database of its own, and the same for the throughput benchmark's reference loop's
work over the same alerts (``handler_cpu.reference``: a dict directory, published
through the same publisher): ``extra`` is what the larger directory adds per alert,
for each. The caches are this machine's unless told (``--d1``, ``--ll``: size,
ways, line bytes); the simulation has no other process taking a share of the last
level, as PostgreSQL and the broker do in a real run, so it counts the least a
larger directory costs. The process's own timing still moves the counts from run to
run (when PostgreSQL answers within a batch, when the collector runs, where the
allocator puts a batch's large buffers): on 2026-12-04 five runs of one tree at 1,000
users took 35-49 last-level read misses an alert and 208-282 write misses, at
100,000 users 53-55 and 274-288; compare medians of a few runs. A miss is not a
second (the processor overlaps some; a write waits less than a read), so this says
where a larger directory's cost comes from, not how long it takes. About five minutes
at 100,000 users.

Needs valgrind (Debian: ``apt-get install valgrind``). Uses an embedded PostgreSQL
unless ROUTER_DATABASE_URL is set (its user then needs CREATEDB).

    .venv/bin/python bench/cache_misses.py [--users 100000] [--baseline-users 1000]
        [--warm 3] [--counted 4] [--json]
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
import tempfile
import time
from pathlib import Path
from typing import Any

from handler_cpu import BATCH, alerts, batch_worker, database, reference
from instructions import database_to_count_in

from router.logging import configure

#: This machine's caches as the benchmarks measured them (lscpu, 2026-12): a 32 KiB
#: 8-way first-level data cache and a 32 MiB 16-way last level, 64-byte lines.
D1 = "32768,8,64"
LL = "33554432,16,64"
LOOPS = ("router", "reference")
_MISSES = re.compile(r"(D1|LLd)\s+misses:\s+[\d,]+\s+\(\s*([\d,]+) rd \+\s*([\d,]+) wr\)")


def switch(at: Path) -> None:
    """Wait, running, until the counting process has switched the count (it then makes
    ``at``): a process blocked in a call would not see ``callgrind_control``'s request."""
    at.with_suffix(".waiting").write_text(str(os.getpid()))
    parent = os.getppid()
    while not at.exists():
        if os.getppid() != parent:  # the counting process is gone: nobody will switch it
            raise SystemExit("bench/cache_misses.py: the counting process is gone")
        for _ in range(20_000):
            pass


async def counted_work(
    url: str, users: int, warm: int, counted: int, loop: str, switches: Path
) -> None:
    """``warm`` batches, the count switched on, ``counted`` batches, the count switched
    off: the worker's batch path, or (``loop`` ``reference``) the reference loop's work."""

    def before(n: int) -> None:
        if n == warm:
            switch(switches / "on")
        elif n == warm + counted:  # before anything the batches used is dropped
            switch(switches / "off")

    async with batch_worker(url, users) as (worker, publisher):
        if loop == "reference":
            await reference(publisher, users, warm + counted, before)
        else:
            rnd = random.Random(7)
            for n in range(warm + counted):
                before(n)
                result = await worker.route(alerts(n * BATCH, users, rnd))
                await worker.record(result)
                assert result.jobs == 3 * BATCH, f"batch {n}: {result.jobs} jobs"
            before(warm + counted)


def misses(url: str, users: int, loop: str, args: argparse.Namespace) -> dict[str, float]:
    """The simulated misses per alert of one process doing ``loop``'s counted batches on
    a database of its own on ``url``'s server."""
    database_url = database_to_count_in(url)
    with tempfile.TemporaryDirectory(prefix="router-misses-") as tmp:
        switches = Path(tmp)
        said = switches / "stderr"
        with said.open("w") as stderr_file:
            process = subprocess.Popen(
                [
                    "valgrind",
                    "--tool=callgrind",
                    "--instr-atstart=no",
                    "--cache-sim=yes",
                    f"--D1={args.d1}",
                    f"--LL={args.ll}",
                    f"--callgrind-out-file={switches / 'callgrind.out'}",
                    sys.executable,
                    __file__,
                    "--inner",
                    "--users",
                    str(users),
                    "--warm",
                    str(args.warm),
                    "--counted",
                    str(args.counted),
                    "--loop",
                    loop,
                    "--switches",
                    tmp,
                ],
                env={**os.environ, "ROUTER_DATABASE_URL": database_url},
                stdout=subprocess.DEVNULL,
                stderr=stderr_file,
            )
            with process:
                try:
                    for state in ("on", "off"):
                        waiting = (switches / state).with_suffix(".waiting")
                        while not waiting.exists() and process.poll() is None:
                            time.sleep(0.2)
                        if process.poll() is not None:
                            break
                        subprocess.run(
                            ["callgrind_control", f"--instr={state}", waiting.read_text()],
                            capture_output=True,
                            check=True,
                        )
                        (switches / state).touch()
                except BaseException:  # interrupted, or callgrind_control failed
                    process.kill()  # not left waiting, running, for a switch
                    raise
        stderr = said.read_text()
        found = {
            name: (int(rd.replace(",", "")), int(wr.replace(",", "")))
            for name, rd, wr in _MISSES.findall(stderr)
        }
        if process.returncode != 0 or set(found) != {"D1", "LLd"}:
            raise SystemExit(f"the counted run failed (exit code {process.returncode}):\n{stderr}")
    events = args.counted * BATCH
    return {
        "d1": round(sum(found["D1"]) / events, 1),
        "ll_read": round(found["LLd"][0] / events, 1),
        "ll_write": round(found["LLd"][1] / events, 1),
    }


def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for loop in LOOPS:
        large = misses(url, args.users, loop, args)
        small = misses(url, args.baseline_users, loop, args)
        figures[loop] = {
            str(args.users): large,
            str(args.baseline_users): small,
            "extra": {key: round(large[key] - small[key], 1) for key in large},
        }
    figures.update(
        users=args.users,
        baseline_users=args.baseline_users,
        warm=args.warm,
        counted=args.counted,
        d1=args.d1,
        ll=args.ll,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000, help="the large directory")
    parser.add_argument("--baseline-users", type=int, default=1_000, help="the small one")
    parser.add_argument("--warm", type=int, default=3, help="batches of 500 alerts, not counted")
    parser.add_argument("--counted", type=int, default=4, help="batches counted")
    parser.add_argument("--d1", default=D1, help="size,ways,line bytes (valgrind's --D1)")
    parser.add_argument("--ll", default=LL, help="size,ways,line bytes (valgrind's --LL)")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=LOOPS, help=argparse.SUPPRESS)
    parser.add_argument("--switches", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.users < 1 or args.baseline_users < 1:
        parser.error("--users and --baseline-users must be at least 1")
    if args.warm < 1 or args.counted < 1:
        parser.error("--warm and --counted must be at least 1")
    configure("json", "WARNING")  # as the other benchmarks run the worker
    if args.inner:
        asyncio.run(
            counted_work(
                os.environ["ROUTER_DATABASE_URL"],
                args.users,
                args.warm,
                args.counted,
                args.loop or "router",
                args.switches,
            )
        )
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    with database() as url:
        figures = measure(url, args)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"misses per alert (valgrind's caches: D1 {args.d1}, LL {args.ll}):")
    for loop in LOOPS:
        for size in (str(args.users), str(args.baseline_users), "extra"):
            found = figures[loop][size]
            label = f"{size} users" if size != "extra" else "the larger adds"
            print(
                f"  {loop:9} {label:>16}: LL read {found['ll_read']:7.1f}, "
                f"LL write {found['ll_write']:7.1f}, D1 {found['d1']:8.1f}"
            )


if __name__ == "__main__":
    main()
