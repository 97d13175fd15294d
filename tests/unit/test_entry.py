"""The ``router`` command's first code: a stop while starting is a clean exit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# A start interrupted in code that catches every exception, as pydantic-core does
# while it builds a serializer (it wraps what a handler raises in a SchemaError).
_SWALLOWING_START = textwrap.dedent(
    """
    import os, signal, sys, time
    from router.entry import exit_cleanly
    signal.signal(signal.SIGTERM, exit_cleanly)
    print("imported", flush=True)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except BaseException:
        pass
    print("carried on after the signal", flush=True)
    sys.exit(3)
    """
)


def test_sigterm_while_starting_exits_0_even_inside_code_that_catches_everything() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SWALLOWING_START], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "imported\n"
    said = json.loads(done.stderr.strip().splitlines()[-1])
    assert said["event"] == "stop_requested_while_starting"
    assert said["signal"] == "SIGTERM"
    assert said["level"] == "info"
