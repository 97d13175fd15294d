"""The chaos scenario of tests/chaos.py: a short form in `make test`, the long one on request.

``ROUTER_CHAOS_LONG=1`` runs 20,000 events and 10 kills (the figures in
docs/guarantees.md); otherwise 2,000 events and 2 kills (the
cluster chaos short form kills workers too).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos import run_chaos
from tests.privacy import leaks_in

LONG = os.environ.get("ROUTER_CHAOS_LONG") == "1"


@pytest.mark.long
async def test_sigkilled_again_and_again_the_router_loses_nothing_and_keeps_job_ids(
    router_env: dict[str, str], tmp_path: Path
) -> None:
    result = await run_chaos(
        router_env,
        tmp_path,
        events=20_000 if LONG else 2_000,
        kills=10 if LONG else 2,
        users=200 if LONG else 50,
        timeout=900 if LONG else 240,
    )
    print("\n" + result.summary())
    assert result.lost == 0
    assert result.mismatched_job_ids == 0
    assert len(result.resume_seconds) == result.kills
    assert leaks_in((tmp_path / "chaos-router.log").read_text()) == []
