"""The data directory is private: the drafts, their log and the secret are the server's user's.

SQLite's database, WAL and SHM files hold every draft in the clear; created under the common
umask (022) they were readable by every local user. `make_private()`, run first by the CLI,
sets the process umask to `UMASK` (0o077), so that every file the server creates is 0600 and
every directory 0700 (SQLite gives the WAL and SHM the database file's mode), and creates the
data directory 0700. What exists already is left as it is (an operator may have a reason, a
backup group), but `warn_if_loose()` logs a warning at start for the directory or any of
`PRIVATE_FILES` that others may read or write, naming the path and its mode.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["PRIVATE_FILES", "UMASK", "loose_paths", "make_private", "warn_if_loose"]

logger = logging.getLogger("draftsync.files")

UMASK = 0o077
PRIVATE_FILES = ("draftsync.db", "draftsync.db-wal", "draftsync.db-shm", "secret")


def make_private(data_dir: Path) -> None:
    """Set the process umask to `UMASK` and create `data_dir` (and any missing parent) 0700."""
    os.umask(UMASK)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def loose_paths(data_dir: Path) -> list[tuple[Path, int]]:
    """The data directory and the files of `PRIVATE_FILES` that exist with a group or other
    permission bit set, with their modes."""
    loose = []
    for path in (data_dir, *(data_dir / name for name in PRIVATE_FILES)):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            loose.append((path, mode))
    return loose


def warn_if_loose(data_dir: Path) -> None:
    for path, mode in loose_paths(data_dir):
        private = "0700" if path.is_dir() else "0600"
        logger.warning(
            "%s has mode %04o: other local users may read the drafts; chmod %s it",
            path,
            mode,
            private,
        )
