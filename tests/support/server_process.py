"""Run the real draftsync server as a subprocess (uvicorn on a free loopback port).

Tests talk to it only over the network, like any client would; `kill()` is a real SIGKILL.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from server.auth import TokenSigner

__all__ = [
    "ServerProcess",
    "free_port",
    "start_together",
    "stop_process",
    "wait_until_healthy",
]

SECRET = "draftsync-test-secret-0123456789abcdef-0123456789"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(
    process: subprocess.Popen[bytes],
    url: str,
    timeout: float,
    log: Callable[[], str],
    what: str,
) -> None:
    """Poll `url` until it answers 200; a process that exits first, or a timeout, raises with
    its log (the only place a failed start explains itself)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start:\n{log()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer within {timeout}s:\n{log()}")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s: a test's server never outlives it."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ServerProcess:
    def __init__(
        self,
        data_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        address_space: int | None = None,
        nofile: int | tuple[int, int] | None = None,
    ) -> None:
        """`address_space`: an RLIMIT_AS for the server, in bytes, so that a regression in a
        test that attacks it fails the test instead of eating the machine's memory.
        `nofile`: its RLIMIT_NOFILE, soft and hard (one number: the server cannot raise it),
        to attack its file limit with a bounded number of sockets."""
        self.data_dir = data_dir
        self.args = list(args)
        self.env = env or {}  # extra environment: DRAFTSYNC_FAULTS for fault injection
        self.address_space = address_space
        self.nofile = nofile
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        self.signer = TokenSigner(SECRET)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def store_url(self) -> str | None:
        """The PostgreSQL URL given with --store; None: the SQLite file in data_dir."""
        if "--store" in self.args:
            return self.args[self.args.index("--store") + 1]
        return None

    @property
    def database(self) -> Path:
        return self.data_dir / "draftsync.db"

    def token(self, user: str, *, ttl: int = 3600, now: float | None = None) -> str:
        return self.signer.issue(user, ttl_seconds=ttl, now=time.time() if now is None else now)

    def start(self, timeout: float = 20) -> ServerProcess:
        self.launch()
        return self.wait_started(timeout)

    def launch(self) -> ServerProcess:
        """Start the process without waiting for it to answer (see `start_together`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "DRAFTSYNC_SECRET": SECRET, "PYTHONUNBUFFERED": "1", **self.env}
        command = [sys.executable, "-m", "server", "serve", "--port", str(self.port)]
        command += ["--data", str(self.data_dir), *self.args]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=log, preexec_fn=self._limit
            )
        return self

    def wait_started(self, timeout: float = 20) -> ServerProcess:
        """Wait until the launched process answers /healthz."""
        assert self.process is not None, "launch() first"
        wait_until_healthy(self.process, f"{self.http_url}/healthz", timeout, self.log, "server")
        return self

    def _limit(self) -> None:
        if self.address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (self.address_space, self.address_space))
        if self.nofile is not None:
            soft, hard = self.nofile if isinstance(self.nofile, tuple) else (self.nofile,) * 2
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye, as a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def terminate(self, timeout: float = 20) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def restart(self) -> ServerProcess:
        self.kill()
        return self.start()

    def stop(self) -> None:
        stop_process(self.process)


def start_together(*servers: ServerProcess, timeout: float = 20) -> tuple[ServerProcess, ...]:
    """Launch every server, then wait for each: their start-ups (seconds of imports each)
    overlap instead of adding up. A server that fails to start stops the others."""
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_started(timeout)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers
