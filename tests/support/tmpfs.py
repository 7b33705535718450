"""A small real file system for the disk-full tests: a tmpfs mounted for one test, and a file
that fills it. Mounting needs root (CI runs as root); elsewhere the test is skipped, and under
CI a mount that fails fails the test rather than skip what CI must run."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["fill", "mounted_tmpfs"]


@contextlib.contextmanager
def mounted_tmpfs(mount_point: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `mount_point` (made here), unmounted afterwards."""
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        message = f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def fill(path: Path, size: int, chunk_bytes: int = 64 * 1024) -> int:
    """Write `path` until its file system (of `size` bytes) is full, bounded by four times
    that; returns the bytes written."""
    chunk = b"\xff" * chunk_bytes
    written = 0
    with path.open("wb", buffering=0) as filler:
        for _ in range(4 * size // chunk_bytes):
            try:
                written += filler.write(chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
                return written
    raise AssertionError("the file system never filled")
