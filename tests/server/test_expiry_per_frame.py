"""Expiry on open sockets (issue 27, point 3), the check made for every frame: a timer closes
a connection at its token's expiry, but the timer is late when the event loop is busy, so a
frame read at or after expiry must be dropped by the reader itself. The real room, store and
y-websocket reader (`server/sync/endpoint.py`) in-process, so that the frame is handled before
the expiry's timer has had a turn of the loop (`tests/server/test_token_expiry.py` shows the
same promise on a real server, where the timer usually comes first)."""

from __future__ import annotations

import time
from pathlib import Path

from pycrdt import Doc, Text

from bench.harness import open_room
from crdt.protocol import Update, encode_message
from server.errors import CloseCode
from server.sync.endpoint import _Sink
from server.sync.expiry import EXPIRED_REASON, TokenExpiry


def typed(text: str) -> bytes:
    doc = Doc()
    doc.get("title", type=Text).insert(0, text)
    return encode_message(Update(doc.get_update()))


async def test_a_frame_read_after_expiry_is_dropped_before_the_timer_runs(tmp_path: Path) -> None:
    async with open_room(tmp_path) as harness:
        conn, _ = await harness.connect("alice")
        room = harness.room
        assert room is not None
        sink = _Sink(room, conn, TokenExpiry(conn, time.time() + 3600))
        sink.leave([typed("before")])
        await sink.finish()
        await harness.committed()
        version = room.version
        assert str(room.doc.get("title", type=Text)) == "before"

        # Expired a second ago; its timer is armed but has not run (no await since).
        late = _Sink(room, conn, TokenExpiry(conn, time.time() - 1))
        late.leave([typed("LATE ")])
        await late.finish()
        assert (conn.close_code, conn.close_reason) == (CloseCode.UNAUTHORIZED, EXPIRED_REASON)
        await harness.committed()
        assert room.version == version
        assert str(room.doc.get("title", type=Text)) == "before"
