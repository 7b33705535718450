"""Editing sessions: one journal event (`SESSION`) when a connection to a draft ends.

The event holds no content: who (the event's user and session id), the device type, browser
and operating system read from the connection's User-Agent header by `user-agents` (a parser
kept with ua-parser's rules, not regexes of ours), when it started and how long it lasted, and
the draft's version then. The page groups the journal's other events of the same session id
under it. A session whose event cannot be stored (a full disk) is logged and dropped: it must
not keep a connection from closing.
"""

from __future__ import annotations

import logging
from typing import Any

from user_agents import parse

from crdt.journal import EventType, JournalEvent
from server import faults
from server.errors import StoreError
from server.store.api import Store

__all__ = ["MAX_USER_AGENT", "device_of", "record_session"]

logger = logging.getLogger("draftsync.sessions")

MAX_USER_AGENT = 512  # longer headers are cut before parsing: the parser's regexes stay bounded


def device_of(user_agent: str | None) -> dict[str, str]:
    """{device: desktop|mobile|tablet|bot|other, browser, os} of a User-Agent header."""
    if not user_agent:
        return {"device": "other", "browser": "unknown", "os": "unknown"}
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
    data: dict[str, Any] = {
        **device_of(user_agent),
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
