"""The disk reserve: a pre-allocated file in the data directory, freed when the disk fills.

Why: SQLite needs room to get out of a full disk. A WAL checkpoint copies pages into the
database file, which may grow, before the WAL can be truncated; with no byte free it fails, and
freeing a few MB later may still not be enough for it. So the store keeps `size` bytes
allocated in `draftsync.reserve` (posix_fallocate: real blocks, not a sparse file). When a
write meets a full disk (SQLITE_FULL) the reserve is deleted, which gives the checkpoint its
room (`on_release`: the store folds and truncates the WAL), and writes are refused (`DiskFull`:
1013 on a WebSocket, 503 over REST) while joins and reads go on.

Writes resume by themselves, without a restart: each write asked for while refused first
looks at the free space (one statvfs), and once there is room for the reserve and as much
again it allocates the reserve anew and goes ahead. Refusing until then keeps the freed
reserve for what it is for, instead of letting a burst of writes use it up and meet the full
disk again with nothing left to free.

A local-disk concept: with PostgreSQL the database server owns its disk, and `size` 0 turns it
all off (writes then fail with 1013 while the disk is full, as SQLite reports it, and nothing
is refused in advance).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from server import metrics
from server.errors import DiskFull

__all__ = ["DEFAULT_RESERVE_BYTES", "RESERVE_NAME", "DiskReserve"]

logger = logging.getLogger("draftsync.disk")

# Room for a checkpoint of a WAL at its usual bound (server/store/log_writer.py rewinds it at
# ~4 MB) twice over.
DEFAULT_RESERVE_BYTES = 8 * 1024 * 1024
RESERVE_NAME = "draftsync.reserve"
_ZEROS = bytes(64 * 1024)


class DiskReserve:
    def __init__(
        self, directory: Path, size: int, *, on_release: Callable[[], None] | None = None
    ) -> None:
        if size < 0:
            raise ValueError(f"a disk reserve cannot be negative: {size}")
        self.path = directory / RESERVE_NAME
        self.size = size
        self._on_release = on_release
        # Writes are refused: the disk filled and has not had room for the reserve since.
        self._refusing = False

    def make_room(self) -> None:
        """Before the database opens, delete the reserve left by the last run: on a disk that
        filled while the server was down, SQLite could not even create the shared-memory index
        it needs to read (32 KB, SQLITE_IOERR_SHMSIZE). `start` allocates it again."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def start(self) -> None:
        """Allocate the reserve, once the database is open. A disk too full for it starts
        refusing writes, so that the first write after space is freed allocates it."""
        if self.size == 0:
            return
        if not self._hold():
            logger.error(
                "disk full: no room for the reserve path=%s bytes=%d free=%d; writes are"
                " refused until space is freed",
                self.path,
                self.size,
                self._free(),
            )
            self._refuse()

    def refusal(self) -> DiskFull | None:
        """Why a write must not start now (None: go ahead). While refusing, it first looks
        whether the space is back and, if so, allocates the reserve again and lets it go."""
        if not self._refusing:
            return None
        if self._free() >= 2 * self.size and self._hold():
            self._refusing = False
            metrics.DISK_FULL.set(0)
            logger.warning("disk space is back: reserve allocated again, writes resume")
            return None
        return DiskFull("the disk is full: writes resume once space is freed")

    def disk_full(self) -> None:
        """A write met a full disk: free the reserve (and let the store use its room to fold
        its log) and refuse writes until there is room again."""
        if self.size == 0 or self._refusing:
            return
        released = True
        try:
            self.path.unlink()
        except FileNotFoundError:
            released = False
        logger.error(
            "disk full: reserve released=%s bytes=%d; writes are refused until space is freed,"
            " joins and reads go on",
            released,
            self.size,
        )
        self._refuse()
        if self._on_release is not None:
            self._on_release()

    def _refuse(self) -> None:
        self._refusing = True
        metrics.DISK_FULL.set(1)

    def _free(self) -> int:
        return shutil.disk_usage(self.path.parent).free

    def _hold(self) -> bool:
        """Allocate `size` bytes at `path` (0600); False, leaving no file, if they do not fit."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as error:
            logger.error("disk reserve cannot be created path=%s error=%s", self.path, error)
            return False
        try:
            os.ftruncate(fd, min(os.fstat(fd).st_size, self.size))
            _allocate(fd, self.size)
        except OSError as error:
            os.close(fd)
            with contextlib.suppress(OSError):
                self.path.unlink()
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                logger.error("disk reserve cannot be allocated path=%s error=%s", self.path, error)
            return False
        os.close(fd)
        return True


def _allocate(fd: int, size: int) -> None:
    """Real blocks for `size` bytes: posix_fallocate, or zeros written where the file system
    does not support it."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
    os.lseek(fd, 0, os.SEEK_SET)
    left = size
    while left > 0:
        written = os.write(fd, _ZEROS[: min(left, len(_ZEROS))])
        if written <= 0:
            raise OSError(errno.ENOSPC, "no room for the disk reserve")
        left -= written
    os.fsync(fd)
