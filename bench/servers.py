"""The servers `bench relay` and `bench durability` compare, each a real process on loopback.

    draftsync           python -m server serve (durable: commit, then relay)
    draftsync-relaxed   python -m server serve --durability relaxed
    pycrdt-websocket    python -m bench.peer_pycrdt (WebsocketServer + SQLiteYStore, uvicorn)
    y-websocket-node    @y/websocket-server 0.1.1 (yjs 13), the Yjs reference server, in memory
    draftsync-hocuspocus  python -m server serve (durable), its /hocuspocus endpoint
    hocuspocus-server   @hocuspocus/server 4.7.0 + @hocuspocus/extension-sqlite (a temp file)

The last two are driven by Hocuspocus clients (`protocol`), the others by y-websocket clients.

CPU seconds, peak RSS and RSS now come from /proc (utime + stime; VmHWM; VmRSS), for the server
process alone.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from server.auth import TokenSigner

__all__ = [
    "HOCUSPOCUS_SERVERS",
    "NODE_DIR",
    "SERVERS",
    "ServerProc",
    "free_port",
    "node_ready",
]

REPO = Path(__file__).resolve().parents[1]
NODE_DIR = REPO / "bench" / "node"
SECRET = "draftsync-bench-secret-0123456789abcdef-0123456789"
SERVERS = (
    "draftsync",
    "draftsync-relaxed",
    "pycrdt-websocket",
    "y-websocket-node",
    "draftsync-hocuspocus",
    "hocuspocus-server",
)
HOCUSPOCUS_SERVERS = ("draftsync-hocuspocus", "hocuspocus-server")
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_ready() -> bool:
    modules = NODE_DIR / "node_modules"
    needed = ("@y/websocket-server", "@hocuspocus/server", "@hocuspocus/provider")
    return all((modules / name).is_dir() for name in needed)


@dataclass
class ServerProc:
    name: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    flags: tuple[str, ...] = ()  # more `serve` flags for draftsync (--store, --redis)
    address_space: int | None = None  # RLIMIT_AS in bytes: an attacked server cannot eat the box

    @property
    def url(self) -> str:
        """The WebsocketProvider's serverUrl (the room name is appended to it), or the
        HocuspocusProvider's url."""
        if self.name == "draftsync-hocuspocus":
            return f"ws://127.0.0.1:{self.port}/hocuspocus"
        if self.name.startswith("draftsync"):
            return f"ws://127.0.0.1:{self.port}/ws"
        return f"ws://127.0.0.1:{self.port}"

    @property
    def protocol(self) -> str:
        """What the bench client speaks to this server: "y-websocket" or "hocuspocus"."""
        return "hocuspocus" if self.name in HOCUSPOCUS_SERVERS else "y-websocket"

    @property
    def token(self) -> str | None:
        if not self.name.startswith("draftsync"):
            return None
        return TokenSigner(SECRET).issue("bench", ttl_seconds=24 * 3600, now=time.time())

    def _command(self) -> list[str]:
        if self.name.startswith("draftsync"):
            command = [sys.executable, "-m", "server", "serve", "--port", str(self.port)]
            command += ["--data", str(self.data_dir), "--log-level", "warning"]
            # Every bench client is the one user "bench": the per-user caps meant for people
            # (README "Limits and admission") would measure themselves, not the server.
            command += ["--max-connections-per-user", "1000000"]
            command += ["--max-connections-per-draft", "1000000"]
            command += ["--user-requests-per-second", "1000000", "--user-request-burst", "1000000"]
            command += ["--user-connects-per-second", "1000000", "--user-connect-burst", "1000000"]
            if self.name == "draftsync-relaxed":
                command += ["--durability", "relaxed"]
            return command + list(self.flags)
        if self.name == "pycrdt-websocket":
            db = str(self.data_dir / "ystore.db")
            return [sys.executable, "-m", "bench.peer_pycrdt", "--port", str(self.port), "--db", db]
        if self.name == "y-websocket-node":
            return ["node", str(NODE_DIR / "node_modules/@y/websocket-server/src/server.js")]
        if self.name == "hocuspocus-server":
            db = str(self.data_dir / "hocuspocus.sqlite")
            return ["node", str(NODE_DIR / "hocuspocus_server.mjs"), str(self.port), db]
        raise ValueError(f"unknown server {self.name}")

    def start(self, timeout: float = 30) -> ServerProc:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DRAFTSYNC_SECRET": SECRET,
            "PYTHONUNBUFFERED": "1",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }
        log = (self.data_dir / f"{self.name}.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                self._command(), cwd=REPO, env=env, stdout=log, stderr=log, preexec_fn=self._limit
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen within {timeout}s:\n{self.log()[-3000:]}")

    def _limit(self) -> None:
        if self.address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (self.address_space, self.address_space))

    def log(self) -> str:
        path = self.data_dir / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cpu_seconds(self) -> float:
        assert self.process is not None
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime

    def peak_rss_mb(self) -> float:
        return self._status_mb("VmHWM:")

    def rss_mb(self) -> float:
        """Resident memory now (VmRSS): what the process holds, not its peak."""
        return self._status_mb("VmRSS:")

    def _status_mb(self, field: str) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
        return float("nan")

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye, as a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
