"""No database password is ever printed: one masking function for every DSN form libpq reads."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router import logging as router_logging
from router.db.pool import translate_errors
from router.errors import StoreUnavailable
from router.redact import redact_dsn

# (DSN, what it must show): each password holds the word SECRET.
DSNS = [
    ("postgresql://u:pw-SECRET@127.0.0.1:1/router", "postgresql://u:***@127.0.0.1:1/router"),
    (
        "postgresql://router@127.0.0.1:1/router?password=q-SECRET&sslmode=require"
        "&sslpassword=ssl-SECRET",
        "postgresql://router@127.0.0.1:1/router?password=***&sslmode=require&sslpassword=***",
    ),
    (
        "postgres://router@db/router?pass%77ord=enc-SECRET",
        "postgres://router@db/router?pass%77ord=***",
    ),
    ("postgresql://u:p@ss/w-SECRET@db/router", "postgresql://u:***@db/router"),
    ("postgresql://u:pw with-SECRET@db/router", "postgresql://u:***@db/router"),
    (
        "host=127.0.0.1 port=1 user=router password=kv-SECRET dbname=router",
        "host=127.0.0.1 port=1 user=router password=*** dbname=router",
    ),
    (
        "host=127.0.0.1 port=1 password='a b-SECRET' dbname=router",
        "host=127.0.0.1 port=1 password=*** dbname=router",
    ),
    (r"host=db password = 'it\'s a-SECRET' dbname=x", "host=db password = *** dbname=x"),
    (r"host=db password=a\ b-SECRET dbname=x", "host=db password=*** dbname=x"),
    (
        "host=db sslpassword=ssl-SECRET password='open-SECRET",
        "host=db sslpassword=*** password=***",
    ),
    ("postgresql:///router?host=/run/postgresql", "postgresql:///router?host=/run/postgresql"),
]


@pytest.mark.parametrize(("dsn", "shown"), DSNS)
def test_every_password_form_is_masked_and_the_rest_kept(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown


@given(st.text(min_size=1).filter(lambda t: "\x00" not in t))
def test_a_quoted_key_value_password_never_shows(password: str) -> None:
    quoted = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    assert redact_dsn(f"host=db password={quoted} dbname=router") == (
        "host=db password=*** dbname=router"
    )


@given(st.text(min_size=1))
def test_a_percent_encoded_url_password_never_shows(password: str) -> None:
    encoded = quote(password, safe="")
    assert redact_dsn(f"postgresql://router:{encoded}@db/router?sslpassword={encoded}") == (
        "postgresql://router:***@db/router?sslpassword=***"
    )


def test_dsns_inside_a_message_are_masked() -> None:
    text = (
        "failed for 'postgresql://u:one-SECRET@db/x?sslpassword=two-SECRET' and "
        "host=db password=three-SECRET port=5432"
    )
    assert redact_dsn(text) == (
        "failed for 'postgresql://u:***@db/x?sslpassword=***' and host=db password=*** port=5432"
    )


@pytest.mark.parametrize(("dsn", "shown"), DSNS)
async def test_connection_errors_name_the_database_without_its_password(
    dsn: str, shown: str
) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        async with translate_errors(dsn):
            raise OSError(f"connect failed for {dsn}")
    assert "SECRET" not in str(caught.value) and shown in str(caught.value)


def test_log_lines_carry_no_database_password() -> None:
    out = router_logging.mask_contact_values(
        None,
        "error",
        {
            "event": "batch_failed",
            "error": "at host=db password=kv-SECRET and postgresql://u:p-SECRET@db",
        },
    )
    assert "SECRET" not in out["error"]


def router_status(dsn: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """``router status`` against closed ports: nothing answers, everything is reported."""
    return subprocess.run(
        [sys.executable, "-m", "router", "status", *flags],
        env={
            "PATH": "/usr/bin:/bin",
            "ROUTER_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "ROUTER_DATABASE_URL": dsn,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://router@127.0.0.1:1/router?password=q-SECRET&sslpassword=ssl-SECRET",
        "host=127.0.0.1 port=1 user=router password=kv-SECRET dbname=router",
        "host=127.0.0.1 port=1 password='a b-SECRET' dbname=router",
        "postgresql://router:pw-SECRET@127.0.0.1:1/router",
    ],
)
def test_router_status_never_shows_a_database_password(dsn: str) -> None:
    done = router_status(dsn, "--json")
    assert done.returncode == 1, done.stderr
    database = json.loads(done.stdout)["database"]
    assert database["ok"] is False and database["url"] == redact_dsn(dsn)
    assert "SECRET" not in done.stdout + done.stderr
    done = router_status(dsn)
    assert done.returncode == 1 and "postgresql" in done.stdout and "DOWN" in done.stdout
    assert "SECRET" not in done.stdout + done.stderr
