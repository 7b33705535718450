"""Fault injection for tests: make a named point fail, so that every failure path is exercised.

Set `DRAFTSYNC_FAULTS` to a comma-separated list of points, each optionally with how many times
it fails (`commit`, `journal:2`); each listed point then raises `InjectedFault` that many
times (once by default), then works again, so that a test sees both the failure and the
recovery. A third number lets the point pass that many times first (`join:1:1`: the first join
works, the second fails), for a failure that needs something set up before it (a Hocuspocus
socket with a document open when another's join fails).

Points: `commit` (the group commit, before the store is called), `journal` (the journal
closer's loop), `fanout-message` (a message from Redis, as it is handled), `update`
(a client's update, after the doc applied it: an unexpected server error in a room),
`snapshot` (a snapshot job), `heartbeat` (the fan-out's heartbeat loop, as it drops from a room
the awareness of an instance that stopped beating), `catch-up` (the fan-out's catch-up of a
room from the store: the catch-up loop's step, and the fill of a gap), `join` (a connection's
join, after the accept: a y-websocket connection's, and a Hocuspocus document's once its token
is read: an unexpected error in the endpoint), `room-add` (a connection added to its room,
once it is in the room's set and before the room's first messages to it), `socket-setup` (a
Hocuspocus socket's setup, before it reads its first frame), `session` (a connection's SESSION
event, as it is stored when the connection ends), `send` (a frame's send to
a client, as the connection sends it: a send that fails while the socket is still up),
`unload` (an idle room's unload, once its writes are committed and before its doc goes).

Off (the variable unset, as in production), each point costs one test of an empty dict:
call sites read `if faults.ARMED: faults.trip("commit")`.

Hold points make a worker thread wait instead of fail, for a test that runs the server in its
own process (tests/support/in_process_server.py) and needs a slow piece of work held open
without timing it: `hold("rebuild")` returns the event that lets them go. Point: `rebuild` (a
worker thread that rebuilt a past version for REST, once its answer is made: server/http/
history.py). Call sites read `if faults.HELD: faults.pause("rebuild")`.

A server in a subprocess (tests/support/server_process.py) cannot be reached by `hold`: naming
a hold point in DRAFTSYNC_FAULTS (`rebuild`, `rebuild:2`) holds the first threads that reach it
(one by default; later ones pass), and SIGUSR1 lets every held thread go, as `release` does. So
a browser test can keep one request's rebuild slot taken, see its page refused, then let go.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

__all__ = [
    "ARMED",
    "HELD",
    "HOLD_POINTS",
    "HOLD_SECONDS",
    "POINTS",
    "InjectedFault",
    "arm",
    "hold",
    "pause",
    "paused",
    "release",
    "trip",
]

logger = logging.getLogger("draftsync.faults")

POINTS = frozenset(
    {
        "commit",
        "journal",
        "fanout-message",
        "snapshot",
        "update",
        "heartbeat",
        "catch-up",
        "join",
        "room-add",
        "session",
        "send",
        "socket-setup",
        "unload",
    }
)

HOLD_POINTS = frozenset({"rebuild"})

# The longest a thread waits at a hold point: a test that forgets to let go does not hang.
HOLD_SECONDS = 60.0

ARMED: dict[str, int] = {}
"""Point -> failures left. Empty unless DRAFTSYNC_FAULTS is set."""

_PASSES: dict[str, int] = {}
"""Point -> passes left before it fails (absent: none)."""


class InjectedFault(RuntimeError):
    """An injected failure: an unexpected error, as a bug in the server would raise."""


def arm(spec: str) -> None:
    """Arm the points `spec` names (the syntax of DRAFTSYNC_FAULTS)."""
    for part in filter(None, (p.strip() for p in spec.split(","))):
        point, _, counts = part.partition(":")
        times, _, passes = counts.partition(":")
        if point in HOLD_POINTS:
            _hold_first(point, int(times) if times else 1)
            continue
        if point not in POINTS:
            known = sorted(POINTS | HOLD_POINTS)
            raise ValueError(f"unknown fault point {point!r}: one of {known}")
        ARMED[point] = int(times) if times else 1
        if passes:
            _PASSES[point] = int(passes)
    if ARMED:
        logger.warning("fault injection armed: %s", ", ".join(sorted(ARMED)))


def trip(point: str) -> None:
    """Raise InjectedFault if `point` is armed and has no pass left (and count it down)."""
    left = ARMED.get(point, 0)
    if left > 0 and _PASSES.get(point, 0) > 0:
        _PASSES[point] -= 1
        return
    if left > 0:
        if left == 1:
            del ARMED[point]
        else:
            ARMED[point] = left - 1
        raise InjectedFault(f"injected fault at {point}")


HELD: dict[str, threading.Event] = {}
"""Hold point -> the event its threads wait for. Empty unless a test calls `hold`."""

_paused: dict[str, int] = {}
_paused_lock = threading.Lock()

_HOLDS_LEFT: dict[str, int] = {}
"""Hold point armed from DRAFTSYNC_FAULTS -> threads it still holds (absent: `hold`'s, all)."""


def hold(point: str) -> threading.Event:
    """Make threads that reach `point` wait (at most `HOLD_SECONDS`) until the event returned
    is set; `release(point)` sets it and disarms the point."""
    if point not in HOLD_POINTS:
        raise ValueError(f"unknown hold point {point!r}: one of {sorted(HOLD_POINTS)}")
    event = threading.Event()
    HELD[point] = event
    _HOLDS_LEFT.pop(point, None)  # every thread waits, as `hold` says
    return event


def release(point: str) -> None:
    event = HELD.pop(point, None)
    if event is not None:
        event.set()


def paused(point: str) -> int:
    """How many threads wait at `point` now."""
    with _paused_lock:
        return _paused.get(point, 0)


def pause(point: str) -> None:
    """Wait here while `point` is held (a worker thread's call: never the event loop's)."""
    event = HELD.get(point)
    if event is None:
        return
    with _paused_lock:
        left = _HOLDS_LEFT.get(point)
        if left is not None:  # armed from the environment: only the first threads wait
            if left <= 0:
                return
            _HOLDS_LEFT[point] = left - 1
        _paused[point] = _paused.get(point, 0) + 1
    try:
        event.wait(HOLD_SECONDS)
    finally:
        with _paused_lock:
            _paused[point] -= 1


def _hold_first(point: str, times: int) -> None:
    """Hold the first `times` threads that reach `point` until the process gets SIGUSR1 (a
    test's `os.kill`: a subprocess server has no other way in). Called at import, on the main
    thread, which is where Python runs signal handlers."""
    _HOLDS_LEFT[point] = times
    HELD[point] = threading.Event()
    signal.signal(signal.SIGUSR1, _release_all)
    logger.warning("hold point armed: %s (the first %d; SIGUSR1 lets go)", point, times)


def _release_all(signum: int, frame: object) -> None:
    # no logging here: a signal handler may interrupt a thread that holds the logging lock
    for point in list(HELD):
        release(point)


arm(os.environ.get("DRAFTSYNC_FAULTS", ""))
