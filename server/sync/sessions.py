"""Editing sessions: one journal event (`SESSION`) when a connection to a draft ends.

The event holds no content: who (the event's user and session id), the device type, browser
and operating system read from the connection's User-Agent header by `user-agents` (a parser
kept with ua-parser's rules, not regexes of ours), when it started and how long it lasted, and
the draft's version then. The page groups the journal's other events of the same session id
under it. A session whose event cannot be stored (a full disk) is logged and dropped: it must
not keep a connection from closing.

The parser costs: importing it ~0.2 s (its rules are one large module), which every server
start paid before its first connection although most starts (tests, a restart under load)
record no session for a while; and ~1.3 ms a parse, on the event loop at each connection's
end, although a draft's connections mostly share a handful of browsers. So it is imported when
the first session ends (once per process, on the event loop: a worker thread for it put a
thread on the connection's way out, through which a server stopping waited), and what it
answers is kept per header (`device_of`'s cache).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from crdt.journal import EventType, JournalEvent
from server import faults
from server.errors import StoreError
from server.store.api import Store

__all__ = ["MAX_USER_AGENT", "device_of", "record_session"]

logger = logging.getLogger("draftsync.sessions")

MAX_USER_AGENT = 512  # longer headers are cut before parsing: the parser's regexes stay bounded


@functools.lru_cache(maxsize=1024)
def device_of(user_agent: str | None) -> dict[str, str]:
    """{device: desktop|mobile|tablet|bot|other, browser, os} of a User-Agent header. Kept
    per header: treat the answer as read-only."""
    if not user_agent:
        return {"device": "other", "browser": "unknown", "os": "unknown"}
    from user_agents import parse  # imported here: see the module's docstring

    agent = parse(user_agent[:MAX_USER_AGENT])
    if agent.is_bot:
        device = "bot"
    elif agent.is_tablet:
        device = "tablet"
    elif agent.is_mobile:
        device = "mobile"
    elif agent.is_pc:
        device = "desktop"
    else:
        device = "other"
    browser = agent.browser.family if agent.browser.family != "Other" else "unknown"
    system = agent.os.family if agent.os.family != "Other" else "unknown"
    return {"device": device, "browser": browser, "os": system}


async def record_session(
    store: Store,
    draft_id: str,
    *,
    user: str,
    session: str,
    user_agent: str | None,
    started: float,
    ended: float,
    version: int,
) -> None:
    header = user_agent[:MAX_USER_AGENT] if user_agent else None
    data: dict[str, Any] = {
        **device_of(header),
        "started_at": started,
        "duration_s": round(max(0.0, ended - started), 3),
    }
    event = JournalEvent(EventType.SESSION, draft_id, version, user, session, None, ended, data)
    if faults.ARMED:
        faults.trip("session")
    try:
        await store.append_events([event])
    except StoreError as error:
        logger.warning("session not journaled draft=%s error=%s", draft_id, error)
