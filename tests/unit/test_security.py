"""Secured Kafka connections and secrets: what each setting turns into, and what never leaks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from router.errors import ConfigError
from router.kafka.security import broker_security, client_options
from router.settings import Settings


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def test_plaintext_needs_no_security_object() -> None:
    assert broker_security(Settings()) is None
    assert "security_protocol" not in client_options(Settings())


def test_ssl_verifies_the_broker_against_the_given_ca(ca_file: str) -> None:
    security = broker_security(Settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=ca_file))
    assert type(security) is BaseSecurity and security.use_ssl
    assert security.ssl_context is not None and security.ssl_context.check_hostname


@pytest.mark.parametrize(
    ("mechanism", "kind"),
    [("PLAIN", SASLPlaintext), ("SCRAM-SHA-256", SASLScram256), ("SCRAM-SHA-512", SASLScram512)],
)
def test_each_sasl_mechanism_maps_to_faststreams_object(
    mechanism: str, kind: type, ca_file: str
) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,  # type: ignore[arg-type]
        kafka_sasl_username="router",
        kafka_sasl_password="s3cret",  # type: ignore[arg-type]
        kafka_ssl_ca_file=ca_file,
    )
    security = broker_security(settings)
    assert type(security) is kind and security.use_ssl
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == mechanism


def test_sasl_without_credentials_is_refused_naming_the_variables() -> None:
    with pytest.raises(ConfigError, match="ROUTER_KAFKA_SASL_USERNAME"):
        broker_security(Settings(kafka_security_protocol="SASL_PLAINTEXT"))


def test_missing_tls_files_are_named() -> None:
    with pytest.raises(ConfigError, match="ROUTER_KAFKA_SSL_CA_FILE"):
        broker_security(
            Settings(kafka_security_protocol="SSL", kafka_ssl_ca_file="/nonexistent/ca.pem")
        )


def test_secrets_come_from_files_and_never_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "password").write_text("hunter2-from-file\n")
    (tmp_path / "db").write_text("postgresql://router:pg-secret@db:5432/router\n")
    monkeypatch.setenv("ROUTER_KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "password"))
    monkeypatch.setenv("ROUTER_DATABASE_URL_FILE", str(tmp_path / "db"))
    settings = Settings()
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "hunter2-from-file"
    assert settings.database_url.get_secret_value().endswith("@db:5432/router")
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "hunter2" not in shown and "pg-secret" not in shown


def run_router(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router", "run"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_unknown_security_protocol_exits_2_naming_the_variable() -> None:
    done = run_router({"ROUTER_KAFKA_SECURITY_PROTOCOL": "TLS"})
    assert done.returncode == 2
    assert "ROUTER_KAFKA_SECURITY_PROTOCOL" in done.stderr and "Traceback" not in done.stderr


def test_an_unreadable_secret_file_exits_2_without_the_secret() -> None:
    done = run_router({"ROUTER_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr


# Secrets and a bad value that no error may echo (issue 17, item 1).
SECRET_ENV = {
    "ROUTER_DATABASE_URL": "postgresql://router:pg-SECRET-1@db:5432/router",
    "ROUTER_INGEST_TOKENS": "tok-SECRET-2,tok-SECRET-3",
    "ROUTER_KAFKA_SSL_KEY_PASSWORD": "key-SECRET-4",
}


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (
            {"ROUTER_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/SECRET-5"},
            ["ROUTER_KAFKA_SASL_PASSWORD_FILE"],
        ),
        ({"ROUTER_TOPIC_PARTITIONS": "many-SECRET-6"}, ["ROUTER_TOPIC_PARTITIONS"]),
        (
            {"ROUTER_KAFKA_SECURITY_PROTOCOL": "TLS-SECRET-7", "ROUTER_HTTP_PORT": "99999"},
            ["ROUTER_KAFKA_SECURITY_PROTOCOL", "ROUTER_HTTP_PORT"],
        ),
    ],
)
def test_a_bad_setting_names_its_variables_and_echoes_no_value(
    bad: dict[str, str], named: list[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "router", "users", "list"],
        env={"PATH": "/usr/bin:/bin", **SECRET_ENV, **bad},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    for name in named:
        assert name in done.stderr, (name, done.stderr)
    shown = done.stdout + done.stderr
    assert "SECRET" not in shown, shown
    assert "99999" not in shown, shown
