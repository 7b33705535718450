"""The process's file limit: raised to the hard limit at start, part of it kept in reserve.

Every socket is a file descriptor. At the limit, accept() fails (EMFILE) and the server stops
answering everyone, `/healthz` included. So at start the soft limit is raised to the hard one
(what an unprivileged process may do), and sockets may use all of it but `reserved` fds: the
store's files, the log, worker threads and a burst of accepts always find one.
"""

from __future__ import annotations

import logging
import resource

__all__ = ["raise_nofile", "socket_budget"]

logger = logging.getLogger("draftsync.admission")


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE's soft limit to its hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY:
        # Linux never reports infinity for NOFILE; elsewhere keep what we have and bound it.
        return soft if soft != resource.RLIM_INFINITY else 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            logger.warning("could not raise the file limit from %d to %d: %s", soft, hard, error)
    return soft


def socket_budget(nofile: int, reserved: int) -> int:
    """Sockets the server may hold open at once under `nofile`, keeping `reserved` fds free."""
    return max(1, nofile - reserved)
