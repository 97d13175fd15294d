"""Logs never carry a usable email address or phone number."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable
from datetime import timedelta

import pytest
import structlog

from router import logging as router_logging
from router import metrics
from router.directory.models import Directory
from router.routing.build import Paging
from router.routing.handler import Worker
from router.routing.pipeline import finish, plan
from router.routing.report import Tally, report
from router.routing.rules import RoutingOptions
from router.settings import Settings
from tests.conftest import T0, make_event, make_method, make_user
from tests.unit.test_handler import RecordingPublisher, alert, directory, record


def test_addresses_are_masked_in_any_string_value() -> None:
    out = router_logging.mask_contact_values(
        None, "info", {"event": "x", "detail": "send to Alice@Example.com and +14155551234"}
    )
    assert out["detail"] == "send to A***@Example.com and +14*******34"


def test_json_logs_carry_bound_event_id(capsys: pytest.CaptureFixture[str]) -> None:
    router_logging.configure("json", "INFO")
    try:
        with structlog.contextvars.bound_contextvars(event_id="e-42"):
            structlog.get_logger("t").info("job_published", to="bob@example.com")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["event"] == "job_published" and record["event_id"] == "e-42"
        assert record["to"] == "b***@example.com"
    finally:
        structlog.contextvars.clear_contextvars()


def test_the_routers_lines_and_a_librarys_lines_have_one_shape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    router_logging.configure("json", "INFO")
    structlog.get_logger("router.t").info("job_published", to="bob@example.com")
    logging.getLogger("aiokafka.t").warning("no leader for %s", "alice@example.com")
    mine, theirs = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert set(mine) - {"to"} == set(theirs) == {"event", "level", "logger", "timestamp"}
    assert (mine["logger"], mine["level"], mine["to"]) == ("router.t", "info", "b***@example.com")
    assert (theirs["logger"], theirs["event"]) == ("aiokafka.t", "no leader for a***@example.com")


def test_a_second_configure_reaches_loggers_already_in_use(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = structlog.get_logger("router.t")
    router_logging.configure("json", "INFO")
    log.info("first")
    router_logging.configure("json", "WARNING")
    log.info("dropped")
    log.warning("second")
    assert not router_logging.enabled(logging.INFO) and router_logging.enabled(logging.WARNING)
    router_logging.configure("console", "DEBUG")
    log.debug("third")
    first, second, third = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["event"] for line in (first, second)] == ["first", "second"]
    assert "third" in third and not third.startswith("{")
    router_logging.configure("json", "INFO")


async def test_each_routed_event_has_a_line_at_info_and_none_above(
    capsys: pytest.CaptureFixture[str],
) -> None:
    worker = Worker(await directory(), RecordingPublisher(), Settings(), clock=lambda: T0)
    router_logging.configure("json", "WARNING")
    await worker.handle([record(alert(f"quiet-{i}"), i) for i in range(3)])
    assert capsys.readouterr().err == ""
    router_logging.configure("json", "INFO")
    await worker.handle([record(alert(f"told-{i}"), 10 + i) for i in range(3)])
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["event"], e["event_id"], e["jobs"]) for e in lines] == [
        ("event_routed", f"told-{i}", 3) for i in range(3)
    ]


def test_the_line_of_a_routed_event_says_its_skips_and_their_reasons(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A step of a page to a user with a disabled method: one skip (``disabled``), and
    the sent ones say ``escalated``, as the decisions published do."""
    users = Directory.of(
        [make_user("alice")],
        [
            make_method("m1", disabled=True),
            make_method("m2", transport="sms", created_at=T0 + timedelta(seconds=1)),
        ],
    )
    event = make_event(severity="critical")
    routed = finish(plan(event, users, T0, RoutingOptions(), (Paging(step=2), ["alice"])))
    router_logging.configure("json", "INFO")
    report([routed], Tally([routed]))
    (line,) = [json.loads(text) for text in capsys.readouterr().err.splitlines()]
    decisions = routed.decisions
    assert (line["event"], line["jobs"], line["skipped"], line["reasons"]) == (
        "event_routed",
        1,
        sum(d.outcome == "skipped" for d in decisions),
        sorted({d.reason for d in decisions if d.reason}),
    )
    assert line["reasons"] == ["disabled", "escalated"]


def lost() -> float:
    return metrics.REGISTRY.get_sample_value("router_log_lines_lost_total") or 0.0


class _BrokenPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_line_that_cannot_be_written_is_counted_and_the_work_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router_logging.configure("json", "INFO")
    before = lost()
    monkeypatch.setattr(sys, "stderr", _BrokenPipe())
    structlog.get_logger("router.t").info("event_routed", event_id="e-1")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    sys.stderr.close()
    structlog.get_logger("router.t").warning("still_going")
    assert lost() == before + 2


def test_a_value_orjson_refuses_is_written_as_the_standard_library_writes_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    router_logging.configure("json", "INFO")
    structlog.get_logger("router.t").info("odd_values", offset=2**64, detail="a\udcff")
    [line] = capsys.readouterr().err.splitlines()
    assert json.loads(line)["offset"] == 2**64


def test_a_line_no_renderer_takes_is_counted_and_the_work_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    router_logging.configure("json", "INFO")
    before = lost()
    structlog.get_logger("router.t").info("bad_keys", counts={(1, 2): 3})
    structlog.get_logger("router.t").info("next_line")
    assert lost() == before + 1
    assert [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()] == [
        "next_line"
    ]


def test_json_lines_are_ascii_on_a_stderr_that_is_not_utf8(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written = io.BytesIO()
    stderr = io.TextIOWrapper(written, encoding="ascii", errors="backslashreplace")
    monkeypatch.setattr(sys, "stderr", stderr)
    router_logging.configure("json", "INFO")
    structlog.get_logger("router.t").info("job_published", title="Café down")
    stderr.flush()
    assert json.loads(written.getvalue())["title"] == "Café down"
    monkeypatch.undo()
    router_logging.configure("json", "INFO")


@pytest.fixture
def command_that_logs(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """``router audit`` as a new process runs it, the command replaced by one that logs an
    address at INFO and prints JSON; ROUTER_LOG_FORMAT=json. Returns what runs it."""
    from router import entry
    from router.cli import api_commands

    def audit(args: object) -> int:
        structlog.get_logger("router.held").info("held_flushed", to="alice@example.com")
        print('{"changes": []}')
        return 0

    monkeypatch.setattr(api_commands, "audit", audit)
    monkeypatch.setenv("ROUTER_LOG_FORMAT", "json")
    monkeypatch.setattr(sys, "argv", ["router", "audit"])
    structlog.reset_defaults()  # as in a new process (the privacy plugin configured this one)
    return entry.main


def test_a_commands_log_lines_go_to_stderr_masked_not_into_its_output(
    command_that_logs: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Any ``router`` command, not only ``run``: stdout is what tools read."""
    monkeypatch.delenv("ROUTER_LOG_LEVEL", raising=False)
    assert command_that_logs() == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"changes": []}
    line = json.loads(err)
    assert (line["event"], line["to"]) == ("held_flushed", "a***@example.com")


@pytest.mark.parametrize("level", ["WARNING", "loud"])
def test_a_commands_log_level_is_the_setting_or_its_default(
    level: str,
    command_that_logs: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A value the setting cannot take leaves the default (INFO) for the command's lines;
    the command refuses it when it reads its settings."""
    monkeypatch.setenv("ROUTER_LOG_LEVEL", level)
    assert command_that_logs() == 0
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["event"] for line in lines] == (
        [] if level == "WARNING" else ["held_flushed"]
    )
