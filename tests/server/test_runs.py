"""Update frames that reach the server together are applied as one run (`server/sync/endpoint.py`).

- a run is one version: fewer stored rows than frames, nothing lost or doubled, after a restart
  too, and a write ack behind the run still waits for its commit;
- a run stops at a frame it cannot take: the updates before an undecodable update or a
  malformed frame are kept and relayed, nothing from that frame on is, and the sender is closed
  with 4400 as for a frame on its own;
- the rules still judge the semantic writes of a run.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from pycrdt import Doc, Map, Text

from crdt.protocol import SyncStep1, Update, WriteAck, encode_message
from tests.support.pycrdt_client import connect_synced
from tests.support.raw_client import RawClient, connect_raw
from tests.support.server_process import ServerProcess
from tests.support.store_reader import stored_doc, stored_log

TIMEOUT = 10


def new_draft() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


class Typist:
    """A pycrdt doc whose every edit is one update frame, as a Yjs editor sends them."""

    def __init__(self) -> None:
        self.doc: Doc = Doc()

    def frame(self, change: object) -> bytes:
        before = self.doc.get_state()
        change(self.doc)  # type: ignore[operator]
        return encode_message(Update(self.doc.get_update(before)))

    def typed(self, text: str, field: str = "title") -> list[bytes]:
        """One frame per character, appended to `field`."""

        def append(doc: Doc, char: str) -> None:
            root = doc.get(field, type=Text)
            root.insert(len(root), char)

        return [self.frame(lambda d, c=char: append(d, c)) for char in text]


async def joined(server: ServerProcess, draft: str) -> RawClient:
    client = await connect_raw(server.ws_url, draft, server.token("alice"))
    await client.next_message(SyncStep1, timeout=TIMEOUT)
    return client


async def test_frames_that_arrive_together_are_one_version_and_survive_a_restart(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "data").start()
    draft = new_draft()
    text = "frames that arrive together " * 4
    try:
        watcher = await connect_synced(server, draft)
        sender = await joined(server, draft)
        sender.send_together([*Typist().typed(text), encode_message(WriteAck(b"all"))])
        await sender.next_message(WriteAck, timeout=TIMEOUT)
        # acknowledged, so committed: the whole run is stored, in fewer versions than frames
        versions = stored_log(server.database, draft)
        assert 1 <= len(versions) < len(text)
        assert str(stored_doc(server.database, draft).get("title", type=Text)) == text
        await watcher.wait_for(lambda: watcher.text("title") == text, TIMEOUT)
        await sender.close()
        await watcher.disconnect()

        server.terminate()
        server.start()
        again = await connect_synced(server, draft)
        await again.wait_for(lambda: again.text("title") == text, TIMEOUT)
        await again.disconnect()
        assert len(stored_log(server.database, draft)) == len(versions)
    finally:
        server.stop()


async def _assert_run_cut_at_bad_frame(server: ServerProcess, bad: bytes, reason: str) -> None:
    draft = new_draft()
    watcher = await connect_synced(server, draft)
    try:
        sender = await joined(server, draft)
        typist = Typist()
        before, after = typist.typed("kept"), typist.typed("lost")
        sender.send_together([*before, bad, *after])
        code, why = await sender.wait_closed(TIMEOUT)
        assert code == 4400 and why is not None and reason in why, (code, why)
        await watcher.wait_for(lambda: watcher.text("title") == "kept", TIMEOUT)
        await watcher.flush()  # anything more the room took would have been relayed by now
        assert watcher.text("title") == "kept"
        assert str(stored_doc(server.database, draft).get("title", type=Text)) == "kept"
    finally:
        await watcher.disconnect()


async def test_an_undecodable_update_ends_a_run_and_keeps_what_came_before(
    server: ServerProcess,
) -> None:
    garbage = encode_message(Update(bytes(range(1, 30))))
    await _assert_run_cut_at_bad_frame(server, garbage, "undecodable Yjs update")


async def test_a_malformed_frame_ends_a_run_and_keeps_what_came_before(
    server: ServerProcess,
) -> None:
    truncated = encode_message(Update(b"\x01\x02\x03"))[:-2]
    await _assert_run_cut_at_bad_frame(server, truncated, "")


async def test_the_rules_judge_the_writes_of_a_run(server: ServerProcess) -> None:
    draft = new_draft()
    watcher = await connect_synced(server, draft)
    try:
        sender = await joined(server, draft)
        typist = Typist()
        fields = typist.doc.get("fields", type=Map)
        frames = [
            *typist.typed("amounts"),
            typist.frame(lambda _: fields.__setitem__("goal_amount", 1000)),
            typist.frame(lambda _: fields.__setitem__("goal_amount", "a lot")),  # wrong type
            *typist.typed(" stay numbers"),
        ]
        sender.send_together([*frames, encode_message(WriteAck(b"done"))])
        await sender.next_message(WriteAck, timeout=TIMEOUT)
        await watcher.wait_for(lambda: watcher.text("title") == "amounts stay numbers", TIMEOUT)
        await watcher.wait_for(lambda: watcher.fields().get("goal_amount") == 1000, TIMEOUT)
        stored = stored_doc(server.database, draft).get("fields", type=Map)
        assert stored.get("goal_amount") == 1000
        await sender.close()
    finally:
        await watcher.disconnect()


async def test_a_run_that_waits_for_the_room_keeps_the_order_of_what_came_with_it(
    server: ServerProcess,
) -> None:
    # Frames that arrive while the reader waits are handled on the protocol's turn
    # (server/sync/endpoint.py `_Sink`); a run over the inline scan size is checked on a
    # thread, so its room call waits: the reader's task finishes it, then the ack that ended
    # it, then the rest, in order, and nothing is lost or doubled.
    draft = new_draft()
    watcher = await connect_synced(server, draft)
    try:
        sender = await joined(server, draft)
        typist = Typist()
        long = "long " * 1200  # one update of ~6 KB: scanned on a thread (server/sync/limits.py)
        big = typist.frame(lambda d: d.get("title", type=Text).insert(0, long))
        frames = [big, encode_message(WriteAck(b"first")), *typist.typed("abc")]
        sender.send_together([*frames, encode_message(WriteAck(b"second"))])
        first, _ = await sender.next_message(WriteAck, where=lambda m: m.payload == b"first")
        second, _ = await sender.next_message(WriteAck, where=lambda m: m.payload == b"second")
        assert first < second
        assert str(stored_doc(server.database, draft).get("title", type=Text)) == long + "abc"
        await watcher.wait_for(lambda: watcher.text("title") == long + "abc", TIMEOUT)
        sender.send_together(typist.typed("de"))  # the reader waits again: the sink's
        await watcher.wait_for(lambda: watcher.text("title") == long + "abcde", TIMEOUT)
        await sender.close()
    finally:
        await watcher.disconnect()
