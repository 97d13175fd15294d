"""The offline benchmarks run from the project's files and print every figure they name.

``bench/handler_cpu.py``, ``bench/instructions.py`` and ``bench/cache_misses.py`` are how
a change to the hot path is judged (docs/performance.md): they must keep working as the
worker's code changes under them. Their figures are not judged here (they move with the
machine, or with the code); that they come out, whole, is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(
    script: str, *arguments: str, database_url: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``bench/{script} ARGUMENTS``, with ``database_url`` as its ROUTER_DATABASE_URL
    (none of this process's ROUTER_ settings when given)."""
    env = None
    if database_url is not None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
        env["ROUTER_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, f"bench/{script}", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def figures_of(script: str, database_url: str, *arguments: str) -> dict[str, Any]:
    """``bench/{script} ARGUMENTS --json`` on ``database_url``: its last line's figures,
    once it exited 0."""
    done = run(script, *arguments, "--json", database_url=database_url, timeout=600)
    assert done.returncode == 0, done.stderr
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def test_the_handler_benchmark_prints_the_router_and_the_reference_per_event(
    database_url: str,
) -> None:
    figures = figures_of("handler_cpu.py", database_url, "--users", "200", "--batches", "5")
    assert figures["users"] == 200
    assert figures["batches"] == 5
    for name in (
        "us_per_event",
        "route_us_per_event",
        "record_us_per_event",
        "record_wall_ms",
        "reference_us_per_event",
    ):
        assert isinstance(figures[name], float), name
        assert figures[name] > 0, name
    # Routing is a part of the whole: the ledger's write is counted beside it.
    assert figures["route_us_per_event"] < figures["us_per_event"]


@pytest.mark.parametrize(
    ("script", "arguments", "said"),
    [
        ("handler_cpu.py", ["--batches", "2"], "--batches must be at least 5"),
        ("handler_cpu.py", ["--users", "0"], "--users must be at least 1"),
        ("throughput.py", ["--users", "0"], "--users must be at least 1"),
        ("throughput.py", ["--events", "-5"], "--events must be at least 1"),
        ("throughput.py", ["--baseline-users", "0"], "--baseline-users must be at least 1"),
        ("throughput.py", ["--latency-seconds", "0"], "--latency-seconds must be more than 0"),
        ("instructions.py", ["--more", "0"], "--batches and --more must be at least 1"),
        ("instructions.py", ["--users", "0"], "--users must be at least 1"),
        ("cache_misses.py", ["--counted", "0"], "--warm and --counted must be at least 1"),
        ("cache_misses.py", ["--baseline-users", "0"], "must be at least 1"),
    ],
)
def test_a_benchmark_refuses_what_it_cannot_measure_before_starting_anything(
    script: str, arguments: list[str], said: str
) -> None:
    done = run(script, *arguments)
    assert done.returncode == 2
    assert said in done.stderr
    assert "Traceback" not in done.stderr


def test_the_machine_cpu_the_throughput_benchmark_reads_counts_this_process_among_all() -> None:
    # bench/throughput.py's machine_cpu_us_per_event: every process's CPU, from /proc/stat.
    code = (
        "import sys, time; sys.path.insert(0, 'bench'); from throughput import machine_cpu; "
        "a, p = machine_cpu(), time.process_time(); sum(range(20_000_000)); "
        "print(machine_cpu() - a, time.process_time() - p)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    machine, own = (float(x) for x in done.stdout.split())
    assert own > 0.1, "the loop ran"
    assert machine >= 0.9 * own, "this process's CPU is among the machine's (clock ticks)"


def test_the_instruction_count_benchmark_prints_the_instructions_an_event(
    database_url: str,
) -> None:
    # The database's server is where it makes a database for each of its two runs.
    args = ("--users", "50", "--batches", "1", "--more", "1")
    figures = figures_of("instructions.py", database_url, *args)
    few, many = figures["instructions"]["1"], figures["instructions"]["2"]
    assert 0 < few < many, "a batch more is more instructions"
    assert figures["instructions_per_event_k"] == round((many - few) / 500 / 1000, 1)
    few, many = figures["reference_instructions"]["1"], figures["reference_instructions"]["2"]
    assert 0 < few < many, "the reference loop's batch more is more instructions"
    assert figures["reference_instructions_per_event_k"] == round((many - few) / 500 / 1000, 1)


def test_the_cache_miss_benchmark_prints_the_misses_an_event_at_both_sizes(
    database_url: str,
) -> None:
    # Four processes under valgrind, each on a database of its own on this server.
    args = ("--users", "60", "--baseline-users", "20", "--warm", "1", "--counted", "1")
    figures = figures_of("cache_misses.py", database_url, *args)
    assert (figures["users"], figures["baseline_users"]) == (60, 20)
    for loop in ("router", "reference"):
        large, small, extra = figures[loop]["60"], figures[loop]["20"], figures[loop]["extra"]
        for name in ("d1", "ll_read", "ll_write"):
            # Counted: the batches' reads and writes missed the caches, every one of them
            # at least once (500 alerts of records and a ledger made from nothing before).
            assert large[name] > 0 and small[name] > 0, (loop, name)
            assert extra[name] == round(large[name] - small[name], 1), (loop, name)
        # Only the batches: the start (imports, seeding, the load) is not counted, or
        # its misses, spread over 500 alerts, would be thousands an alert at the last level.
        assert large["ll_read"] + large["ll_write"] < 2_000, (loop, large)


@pytest.mark.parametrize(
    ("script", "said"),
    [
        ("instructions.py", "cannot make a database to count in"),
        ("cache_misses.py", "cannot make a database to count in"),
        # Its baseline's database (--users other than --baseline-users), before anything else.
        ("throughput.py", "--baseline-users: cannot make the baseline's database"),
    ],
)
def test_a_benchmark_says_in_a_line_when_it_cannot_make_its_database(
    script: str, said: str
) -> None:
    nothing = "postgresql://nobody@127.0.0.1:1/nothing"  # nothing listens there
    done = run(script, "--users", "5", database_url=nothing)
    assert done.returncode == 1
    assert said in done.stderr
    assert "Traceback" not in done.stderr
