"""structlog, configured once: JSON when not on a terminal, console otherwise.

Standard-library loggers (FastStream, aiokafka, asyncpg) go through the same
processors, so every line has one shape. Email addresses and phone numbers are
masked in every string value before rendering.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from router.addresses import mask

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+\d{8,15}\b")


def mask_text(text: str) -> str:
    """``text`` with every email address and E.164 number masked."""
    text = _EMAIL.sub(lambda m: mask("email", m.group(0)), text)
    return _PHONE.sub(lambda m: mask("sms", m.group(0)), text)


def mask_contact_values(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask addresses wherever they appear in string values."""
    for key, value in event_dict.items():
        if isinstance(value, str):
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
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
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
