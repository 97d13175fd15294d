"""A worker whose background task dies stops with a non-zero status (the
orchestrator restarts it) instead of running on without held pages or probes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

# `router run` with its janitor replaced by one that breaks after a second: the
# test's own wrapper, so production code carries no hook for it.
BROKEN_JANITOR = textwrap.dedent(
    """
    import asyncio, sys
    import router.app

    async def broken_janitor(store, settings, stop):
        await asyncio.sleep(float(sys.argv[1]))
        raise RuntimeError("the purge query broke")

    router.app.run_janitor = broken_janitor
    from router.cli.parser import main
    sys.exit(main(["run"]))
    """
)


def test_router_run_exits_non_zero_when_its_janitor_dies(router_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BROKEN_JANITOR, "5"],
        env={**os.environ, **router_env},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 4, result.stderr[-2000:]
    assert "router: error: the background task router-janitor raised" in result.stderr
    output = result.stdout + result.stderr
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert names.count("background_task_failed") == 1
    [failure] = [e for e in events if e["event"] == "background_task_failed"]
    assert failure["task"] == "router-janitor"
    assert "RuntimeError: the purge query broke" in failure["exception"]
    assert "router_consuming" in names, "it was routing when the task died"
    assert names.index("router_stopped") > names.index("background_task_failed"), "drained"
