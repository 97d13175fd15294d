"""Database secrets out of anything the router prints. Pure.

:func:`redact_dsn` is the one function that masks a PostgreSQL connection
string; ``router status`` (table and ``--json``), the store's connection and
schema errors, ``router demo`` and the log processor (:mod:`router.logging`)
all call it. It knows the three places libpq reads a password from:

- the user info of a URL: ``postgresql://router:SECRET@db/router``;
- the query of a URL: ``postgresql://db/router?password=SECRET&sslpassword=SECRET``
  (any parameter whose name ends in ``password``, percent-encoded or not);
- a key/value DSN: ``host=db password=SECRET`` or ``password = 'a \\' b'`` (quoted
  values with backslash escapes, as libpq reads them).

Given a whole DSN it masks that DSN; given other text (an error message, a
log line) it masks every URL and every ``...password=`` pair inside it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*://"
_WHOLE_URL = re.compile(rf"\s*{_SCHEME}")
# A URL inside free text ends at white space or a quote (inside a valid URL those
# are percent-encoded).
_URL_IN_TEXT = rf"(?<![A-Za-z0-9+.-]){_SCHEME}[^\s\"'<>]*"
# libpq's key/value form: a value is quoted ('...', backslash escapes; an unclosed
# quote runs to the end) or runs to the next white space (backslash escapes too).
_KEYWORD = (
    r"(?<![\w.-])\w*password\s*=\s*(?:'(?:\\.|[^'\\])*'?|(?:\\.|[^\s\\'])(?:\\.|[^\s\\])*|\\)?"
)
_IN_TEXT = re.compile(
    rf"(?P<url>{_URL_IN_TEXT})|(?P<keyword>{_KEYWORD})", re.IGNORECASE | re.DOTALL
)
_KEYWORD_VALUE = re.compile(r"(\w*password\s*=\s*).*", re.IGNORECASE | re.DOTALL)
_QUERY_PARAMETER = re.compile(r"([?&])([^=&#]*)=([^&#]*)")


def _mask_parameter(match: re.Match[str]) -> str:
    separator, name, value = match.groups()
    if value and unquote(name).strip().lower().endswith("password"):
        return f"{separator}{name}={MASK}"
    return match.group(0)


def _mask_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    query_at = rest.find("?")
    head, query = (rest, "") if query_at < 0 else (rest[:query_at], rest[query_at:])
    # The user info ends at the last "@" before the query, so a password holding
    # an unencoded "@" or "/" is masked whole (at worst, more than the password).
    at = head.rfind("@")
    if at >= 0:
        user, colon, password = head[:at].partition(":")
        if colon and password:
            head = f"{user}:{MASK}{head[at:]}"
    return f"{scheme}://{head}{_QUERY_PARAMETER.sub(_mask_parameter, query)}"


def _mask_in_text(match: re.Match[str]) -> str:
    if match.group("url") is not None:
        return _mask_url(match.group("url"))
    return _KEYWORD_VALUE.sub(lambda m: m.group(1) + MASK, match.group("keyword"))


def redact_dsn(text: str, dsn: str | None = None) -> str:
    """``text`` (a DSN, or a message or log line holding one) with every password
    replaced by ``***``; everything else is kept as written.

    Give the ``dsn`` a message is about (a driver's error, say) and that DSN is
    masked wherever the message quotes it, even in a form the patterns cannot
    delimit (a URL whose password holds a raw space)."""
    if dsn and dsn != text and dsn in text:
        text = text.replace(dsn, redact_dsn(dsn))
    if "://" not in text and "password" not in text.lower():
        return text  # the common case for a log line: nothing to look at
    if _WHOLE_URL.match(text):
        # One URL, white space and all: a password may hold a raw space.
        leading = len(text) - len(text.lstrip())
        return text[:leading] + _mask_url(text[leading:])
    return _IN_TEXT.sub(_mask_in_text, text)
