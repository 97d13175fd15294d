"""The ``router`` command's first code: ``router run`` exits 0 on SIGTERM even while starting.

Kubernetes sends SIGTERM whenever it moves a pod, often while the pod is still
importing or joining its group. Before the event loop takes over signals (see
:func:`router.app.run`) a SIGTERM would kill the process with status 143; this
handler is installed before anything heavy is imported, so it exits 0 instead.
Other commands keep the default: interrupting an import is not a success.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> int:
    """Entry point of the ``router`` console script and of ``python -m router``."""
    if sys.argv[1:2] in (["run"], ["ingest"], ["api"]):
        signal.signal(signal.SIGTERM, _exit_cleanly)
    from router.cli.parser import main as cli_main

    return cli_main()
