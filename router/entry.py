"""The ``router`` command's first code: ``router run`` exits 0 on SIGTERM even while starting.

Kubernetes sends SIGTERM whenever it moves a pod, often while the pod is still
importing or joining its group. Before the event loop takes over signals (see
:func:`router.app.run`) a SIGTERM would kill the process with status 143; this
handler is installed before anything heavy is imported, so it exits 0 instead.
Other commands keep the default: interrupting an import is not a success.

The handler ends the process itself (``os._exit``) rather than raising
``SystemExit``: an exception raised at an arbitrary point of the start can be
caught and wrapped by the code it interrupts (pydantic-core building a
serializer turns it into a ``SchemaError``), which made a stop while starting
end with status 1 and a traceback. Nothing needs cleaning up then: no record
has been consumed, so no offset is left to commit and no job is half sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from datetime import UTC, datetime
from types import FrameType


def exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM while starting: say so on stderr, then end the process with status 0."""
    line = {
        "event": "stop_requested_while_starting",
        "level": "info",
        "signal": signal.Signals(signum).name,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a write it interrupted may hold the buffer
            stream.flush()
    with contextlib.suppress(OSError):
        os.write(2, json.dumps(line).encode() + b"\n")
    os._exit(0)


def main() -> int:
    """Entry point of the ``router`` console script and of ``python -m router``."""
    if sys.argv[1:2] in (["run"], ["ingest"], ["api"]):
        signal.signal(signal.SIGTERM, exit_cleanly)
    from router.cli.parser import main as cli_main
    from router.cli.values import log_settings
    from router.logging import configure

    # Every command's log lines as the worker's: on stderr (stdout is the command's
    # output, which tools read), addresses masked. run, ingest and api configure again
    # from their checked settings.
    configure(*log_settings())
    return cli_main()
