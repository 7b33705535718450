"""Ask pycrdt (yrs) in a child process what it makes of an update: accepted, refused, panic,
or the death of the process (a crash, a hang, memory past the address-space limit)."""

from __future__ import annotations

import resource
import select
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import IO

from tests.support.server_process import REPO

__all__ = ["ADDRESS_SPACE", "Verdict", "YrsOracle"]

ADDRESS_SPACE = 4_000_000_000
"""The child's RLIMIT_AS: an update that makes yrs allocate without bound fails there."""


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # "accepted", "refused", "panic", "died" (crash, hang or out of memory)
    detail: bytes = b""  # the doc's state when accepted, else the message


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


class YrsOracle:
    def __init__(self, timeout: float = 10) -> None:
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.deaths = 0

    def __enter__(self) -> YrsOracle:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _start(self) -> subprocess.Popen[bytes]:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.fuzz.yrs_worker"],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # yrs prints a backtrace for each panic
                preexec_fn=_limit_memory,
            )
        return self.process

    def apply(self, update: bytes) -> Verdict:
        process = self._start()
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(struct.pack(">I", len(update)) + update)
            process.stdin.flush()
            header = self._read(process.stdout, 4)
            (length,) = struct.unpack(">I", header)
            body = self._read(process.stdout, length)
        except (OSError, EOFError, TimeoutError):
            self._kill()
            self.deaths += 1
            return Verdict("died")
        status = {b"A": "accepted", b"R": "refused", b"P": "panic"}[body[:1]]
        return Verdict(status, body[1:])

    def _read(self, stream: IO[bytes], n: int) -> bytes:
        out = b""
        while len(out) < n:
            ready, _, _ = select.select([stream], [], [], self.timeout)
            if not ready:
                raise TimeoutError(f"yrs took over {self.timeout}s")
            chunk = stream.read1(n - len(out))  # type: ignore[attr-defined]
            if not chunk:
                raise EOFError("the yrs worker died")
            out += chunk
        return out

    def _kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    pipe.close()
            self.process = None

    def close(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill()
            else:
                self.process.stdout.close()
            self.process = None
