"""The tests' command server runs a ``router`` command as ``python -m router`` would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import command_server


def _plain(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["--help"], {}),
        (["no-such-command"], {}),
        (["users", "list"], {"ROUTER_DATABASE_URL": "not a url"}),
        (["run"], {"ROUTER_BATCH_MAX_RECORDS": "-1"}),
    ],
    ids=["help", "unknown-command", "bad-database-url", "bad-setting"],
)
def test_a_forked_command_answers_as_a_new_process_does(
    args: list[str], extra: dict[str, str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")} | extra
    forked = command_server.run(args, env, timeout=60)
    plain = _plain(args, env)
    assert command_server._SERVER.unavailable is None
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )
    assert forked.stdout or forked.stderr  # each of these says something


def test_a_command_past_its_timeout_is_killed_as_subprocess_run_kills_it() -> None:
    # A "database" that takes the connection and never answers: the command waits.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
        env["ROUTER_DATABASE_URL"] = f"postgresql://router@127.0.0.1:{port}/router"
        with pytest.raises(subprocess.TimeoutExpired):
            command_server.run(["users", "list"], env, timeout=2)
    server = command_server._SERVER._process
    assert server is not None
    for _ in range(100):
        if not _children_of(server.pid):
            break
        time.sleep(0.05)
    assert _children_of(server.pid) == []


def _children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def test_a_server_that_died_is_started_again_and_leaves_no_pipe_to_the_collector() -> None:
    """Its parent-death signal kills the server when the thread that started it ends;
    the next command starts another. The dead one's pipes are closed then, not left to
    the collector, whose ResourceWarning would fail whichever test it fell in."""
    server = command_server.CommandServer()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
        assert server.run(["--help"], env, timeout=60) is not None
        dead = server._process
        assert dead is not None and dead.stdout is not None and dead.stderr is not None
        dead.kill()
        dead.wait()
        answer = server.run(["--help"], env, timeout=60)
        assert answer is not None and answer.returncode == 0
        assert server._process is not dead
        assert dead.stdout.closed and dead.stderr.closed
    finally:
        server.stop()
