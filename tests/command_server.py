"""Run ``router`` commands in the tests without paying the router's imports each time.

A new Python process spends most of a short command (``router users add``) importing
pydantic, asyncpg, structlog and the router: about 0.6 s of CPU of the 0.8 it uses,
and the integration tests run some 750 such commands. So each test process keeps one
**command server**: a process that imported ``router`` once (nothing else: no thread,
no event loop, no setting read) and forks one child per command. The child is a
process of its own, as ``python -m router ARGS`` would be: it takes the test's
environment, working directory, stdin, stdout and stderr (passed as file
descriptors), runs the ``router`` package as ``__main__`` (``runpy``, as ``-m``
does), and exits with the command's status: atexit handlers run and the streams
are flushed, an uncaught exception is printed and is status 1.

What the server cannot show is the import itself under the test's environment, and
it is not used for ``router run``, ``ingest`` or ``api``, which the tests start as
real processes. If the server cannot start (an import fails, an import started a
thread), :func:`run` says so and the commands run as plain subprocesses, so an
import error still fails the tests that meet it. ``TEST_NO_COMMAND_SERVER=1``
turns it off.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import locale
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_READY = b"ready\n"


def _child(connection: socket.socket, request: dict[str, object], fds: list[int]) -> None:
    """The forked child: become the command, report its status, exit. Never returns."""
    import runpy
    import traceback

    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(str(request["cwd"]))
        os.environ.clear()
        os.environ.update(request["env"])  # type: ignore[arg-type]
        connection.sendall(f"pid {os.getpid()}\n".encode())
        sys.argv = ["router", *request["args"]]  # type: ignore[misc]
        try:
            runpy.run_module("router", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            if exit_.code is None:
                code = 0
            elif isinstance(exit_.code, int):
                code = exit_.code
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                code = 120
        connection.sendall(f"exit {code}\n".encode())
    finally:
        os._exit(code)


def _serve(path: str, parent: int) -> None:
    """The server: import the router, say ready, fork a child per connection. It ends
    with the test process that started it (``parent``), even one killed outright."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit("the test process is gone")
    import router.cli.parser  # noqa: F401  the imports every command pays

    if threading.active_count() != 1:
        sys.exit("an import started a thread: forking is not safe")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.buffer.write(_READY)
    sys.stdout.flush()
    # Nobody reads the server's own streams from now on: a full pipe must not stop it.
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.close(quiet)
    while True:
        connection, _ = listener.accept()
        with connection:
            data, fds, _flags, _addr = socket.recv_fds(connection, 1 << 20, 3)
            request = json.loads(data)
            if os.fork() == 0:
                listener.close()
                _child(connection, request, fds)
            for fd in fds:
                os.close(fd)


class CommandServer:
    """The client side: one server process, started on first use."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._path = ""
        self._lock = threading.Lock()
        self.unavailable: str | None = None

    def _start(self) -> bool:
        if self.unavailable is not None:
            return False
        if self._process is not None and self._process.poll() is None:
            return True
        self.stop()  # a server that died: its directory goes
        self._path = str(Path(tempfile.mkdtemp(prefix="router-cmd-")) / "socket")
        root = Path(__file__).resolve().parents[1]
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import tests.command_server as s; s._serve({self._path!r}, {os.getpid()})",
            ],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if line != _READY:
            self._process.kill()
            _, err = self._process.communicate(timeout=10)
            self.stop()
            self.unavailable = (line + err).decode(errors="replace").strip() or "no answer"
            print(f"command server unavailable, using subprocesses: {self.unavailable}")
            return False
        atexit.register(self.stop)
        return True

    def stop(self) -> None:
        """Stop the server, close its pipes and remove its socket's directory. A server
        that died is stopped too before another starts: its pipes, left to the collector,
        would warn (``ResourceWarning``) in whichever test the collection fell."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        if self._path:
            shutil.rmtree(Path(self._path).parent, ignore_errors=True)

    def run(
        self, args: list[str], env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str] | None:
        """``router ARGS`` in a forked child; None when the server is not available."""
        with self._lock:
            if not self._start():
                return None
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        request = {"args": args, "env": env, "cwd": os.getcwd()}
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            connection.connect(self._path)
            socket.send_fds(connection, [json.dumps(request).encode()], [null, out_w, err_w])
        except OSError as error:  # the server is gone: say so, and run a subprocess
            connection.close()
            for fd in (out_r, err_r):
                os.close(fd)
            self.unavailable = f"the command server stopped answering: {error}"
            print(self.unavailable)
            return None
        finally:
            for fd in (null, out_w, err_w):
                os.close(fd)
        return _collect(connection, out_r, err_r, args, timeout)


def _collect(
    connection: socket.socket, out_r: int, err_r: int, args: list[str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Read the child's output and status; kill it at ``timeout``, as subprocess.run does."""
    deadline = time.monotonic() + timeout
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    said = b""
    pid = None
    with selectors.DefaultSelector() as selector:
        for fd in (out_r, err_r, connection.fileno()):
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                for fd in (out_r, err_r):
                    os.close(fd)
                connection.close()
                raise subprocess.TimeoutExpired(["router", *args], timeout)
            for key, _ in selector.select(left):
                fd = int(key.fd)
                data = os.read(fd, 65536)
                if not data:
                    selector.unregister(fd)
                elif fd == connection.fileno():
                    said += data
                    if pid is None and said.startswith(b"pid ") and b"\n" in said:
                        pid = int(said.split(b"\n", 1)[0][4:])
                else:
                    chunks[fd].append(data)
    os.close(out_r)
    os.close(err_r)
    connection.close()
    codes = [int(line[5:]) for line in said.decode().splitlines() if line.startswith("exit ")]
    return subprocess.CompletedProcess(
        ["router", *args],
        codes[0] if codes else -signal.SIGKILL,  # no status: the child was killed
        _text(b"".join(chunks[out_r])),
        _text(b"".join(chunks[err_r])),
    )


def _text(data: bytes) -> str:
    """What ``subprocess.run(..., text=True)`` makes of a stream's bytes."""
    text = data.decode(locale.getpreferredencoding(False))
    return text.replace("\r\n", "\n").replace("\r", "\n")


_SERVER = CommandServer()


def run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m router ARGS`` with ``env``: in a child of the command server when it
    runs, else as a plain subprocess."""
    if os.environ.get("TEST_NO_COMMAND_SERVER") != "1":
        done = _SERVER.run(args, env, timeout)
        if done is not None:
            return done
    return subprocess.run(
        [sys.executable, "-m", "router", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
