"""Real TLS end to end: PostgreSQL with a throwaway CA, Kafka through a mutual-TLS proxy.

PostgreSQL: a server of its own (the suite's shared one listens on a Unix
socket only, where PostgreSQL has no TLS), on 127.0.0.1, that accepts only TLS
connections (``hostssl``; ``hostnossl`` is rejected), with a certificate from a
``trustme`` CA.

Kafka: Tansu cannot terminate TLS itself, so a small TLS-terminating proxy runs
in front of it, requiring a client certificate, and Tansu advertises the
proxy's address, so every connection a client makes goes through TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from router.dev.embedded import (
    POSTGRES_SYSTEM_USER,
    EmbeddedKafka,
    ensure_postgres_system_user,
    free_port,
)
from tests.integration.conftest import RouterProcess, add_contact, cli_ok, cli_refused, run_cli
from tests.integration.test_end_to_end import alert


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@dataclass
class TlsFiles:
    ca: str
    cert: str
    key: str


def write_pems(ca: trustme.CA, workdir: Path, name: str) -> TlsFiles:
    """The CA and a certificate for localhost / 127.0.0.1 issued by it, as PEM files."""
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    files = TlsFiles(
        str(workdir / "ca.pem"), str(workdir / f"{name}.crt"), str(workdir / f"{name}.key")
    )
    ca.cert_pem.write_to_path(files.ca)
    leaf.cert_chain_pems[0].write_to_path(files.cert)
    leaf.private_key_pem.write_to_path(files.key)
    return files


# -- PostgreSQL -------------------------------------------------------------------------------


#: Debian's PostgreSQL 15 (tests/system/install.sh): built with TLS, unlike the embedded 18,
#: and an older server, so the migrations are checked on it too.
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres_user() -> dict[str, str]:
    """subprocess options to run a server as a non-root user (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", POSTGRES_SYSTEM_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return {"user": name}
    ensure_postgres_system_user()
    return {"user": POSTGRES_SYSTEM_USER}


@pytest.fixture(scope="module")
def tls_postgres(ca: trustme.CA) -> Iterator[tuple[str, str]]:
    """(host:port, CA file) of a PostgreSQL that accepts only TLS connections."""
    runas = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="router-tls-pg-"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    owner = pwd.getpwnam(runas["user"]) if runas else None
    if owner is not None:
        os.chown(data, owner.pw_uid, owner.pw_gid)
    data.chmod(0o700)

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, timeout=60, **runas)  # type: ignore[call-overload]

    run(str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8")
    files = write_pems(ca, root, "server")
    if owner is not None:
        for path in (files.cert, files.key):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    Path(files.key).chmod(0o600)
    port = free_port()
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            f"\nlisten_addresses = '127.0.0.1'\nport = {port}\nssl = on\n"
            f"ssl_cert_file = '{files.cert}'\nssl_key_file = '{files.key}'\n"
            f"unix_socket_directories = '{data}'\n"
        )
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "hostssl all all 127.0.0.1/32 trust\n"
        "hostnossl all all 127.0.0.1/32 reject\n"
    )
    run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "server.log"), "start")
    try:
        yield f"127.0.0.1:{port}", files.ca
    finally:
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_the_router_uses_postgresql_over_verified_tls_and_plaintext_is_refused(
    tls_postgres: tuple[str, str], tmp_path: Path
) -> None:
    address, ca_file = tls_postgres
    verified = f"postgresql://postgres@{address}/postgres?sslmode=verify-full&sslrootcert={ca_file}"
    env = {"ROUTER_DATABASE_URL": verified}
    cli_ok(env, "db", "migrate")
    cli_ok(env, "users", "add", "tls-user")
    assert "tls-user" in cli_ok(env, "users", "list")

    # The URL can come from a file, as Kubernetes mounts secrets.
    (tmp_path / "url").write_text(verified + "\n")
    assert "tls-user" in cli_ok(
        {"ROUTER_DATABASE_URL_FILE": str(tmp_path / "url")}, "users", "list"
    )

    plain = f"postgresql://postgres@{address}/postgres?sslmode=disable"
    assert "Cannot use PostgreSQL" in cli_refused(
        {"ROUTER_DATABASE_URL": plain}, "users", "list", code=3
    )

    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    wrong = f"postgresql://postgres@{address}/postgres?sslmode=verify-full&sslrootcert={other_ca}"
    done = run_cli({"ROUTER_DATABASE_URL": wrong}, "users", "list")
    assert done.returncode == 3 and "Traceback" not in done.stderr


# -- Kafka ------------------------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.close()


@contextlib.asynccontextmanager
async def tls_proxy(
    listen_port: int, target_port: int, context: ssl.SSLContext
) -> AsyncIterator[list[int]]:
    """Terminate TLS on ``listen_port`` and forward to 127.0.0.1:``target_port``;
    yields a list that counts the TLS connections accepted."""
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, ssl=context)
    try:
        yield accepted
    finally:
        server.close()


def client_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=files.ca)
    context.load_cert_chain(files.cert, files.key)
    return context


async def test_the_router_routes_through_kafka_over_mutual_tls(
    ca: trustme.CA,
    router_env: dict[str, str],
    start_router: Callable[[dict[str, str]], RouterProcess],
    tmp_path: Path,
) -> None:
    server_files = write_pems(ca, tmp_path, "broker")
    client_files = write_pems(ca, tmp_path, "router")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=server_files.ca)
    server_context.load_cert_chain(server_files.cert, server_files.key)
    server_context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: the router must show its own
    proxy_port = free_port()
    bootstrap = f"localhost:{proxy_port}"
    with EmbeddedKafka(log_path=tmp_path / "tansu.log", advertised=bootstrap) as broker:
        async with tls_proxy(proxy_port, broker.port, server_context) as accepted:
            env = {
                **router_env,
                "ROUTER_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "ROUTER_KAFKA_ENABLE_IDEMPOTENCE": "false",
                "ROUTER_KAFKA_SECURITY_PROTOCOL": "SSL",
                "ROUTER_KAFKA_SSL_CA_FILE": client_files.ca,
                "ROUTER_KAFKA_SSL_CERT_FILE": client_files.cert,
                "ROUTER_KAFKA_SSL_KEY_FILE": client_files.key,
            }
            cli_ok(env, "users", "add", "alice")
            add_contact(env, "alice", "email", "alice@example.com")
            router = start_router(env)
            context = client_context(client_files)
            producer = AIOKafkaProducer(
                bootstrap_servers=bootstrap,
                security_protocol="SSL",
                ssl_context=context,
                enable_idempotence=False,
            )
            consumer = AIOKafkaConsumer(
                bootstrap_servers=bootstrap, security_protocol="SSL", ssl_context=context
            )
            await producer.start()
            await consumer.start()
            try:
                email = env["ROUTER_TOPIC_EMAIL"]
                for _ in range(100):
                    if {env["ROUTER_TOPIC_ALERTS"], email} <= await consumer.topics():
                        break
                    await asyncio.sleep(0.2)
                await producer.send_and_wait(env["ROUTER_TOPIC_ALERTS"], alert("e-tls", ["alice"]))
                parts = [TopicPartition(email, p) for p in range(3)]  # ROUTER_TOPIC_PARTITIONS
                consumer.assign(parts)
                await consumer.seek_to_beginning(*parts)
                jobs = []
                for _ in range(150):
                    for records in (await consumer.getmany(timeout_ms=200)).values():
                        jobs += [json.loads(r.value) for r in records]
                    if jobs:
                        break
                assert [j["event_id"] for j in jobs] == ["e-tls"], router.log()
            finally:
                await consumer.stop()
                await producer.stop()
            assert accepted, "every connection went through the TLS proxy"
            assert await asyncio.to_thread(router.stop) == 0
