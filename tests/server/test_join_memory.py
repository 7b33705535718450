"""A join storm's sync reply is one object in the server however slowly the joiners read.

Every joiner with an empty state vector is handed the same encoded sync step 2
(server/sync/replies.py); the WebSocket layer frames a large payload as its header plus that
object (server/sync/wsprotocol.py) instead of one fresh copy per connection, which used to sit
in each joiner's transport buffer until it read it all (the peak memory of `bench relay` J1).
A Hocuspocus frame is the document's name + that object, handed to the protocol apart
(`PREFIXED_SEND`), not joined per connection.

Measured on the real server process: joiners that stop reading right after asking to sync
hold the reply in the server's transport buffers; the server's RSS must grow by a few copies
at most, not one per joiner. Then they read on and each gets the whole draft.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from pycrdt import Doc, Text, create_sync_message
from websockets.frames import Frame, Opcode

from crdt.hocuspocus import prefix, read_address
from crdt.lib0 import write_var_string
from crdt.protocol import SyncStep1, SyncStep2, decode_message, encode_message
from server.sync.wsprotocol import SHARE_PAYLOAD_BYTES, binary_frame_header
from tests.support.pycrdt_client import connect_synced, type_into
from tests.support.rest import scrape
from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually

DRAFT_CHARS = 6_000_000
STALLED = 16


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "data").start()
    yield process
    process.stop()


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _bytes_sent(server: ServerProcess) -> float:
    for line in (await scrape(server)).splitlines():
        if line.startswith("draftsync_bytes_sent_total "):
            return float(line.split()[1])
    raise AssertionError("no draftsync_bytes_sent_total")


async def _stalled_joiner(
    server: ServerProcess, draft: str, endpoint: str
) -> websockets.ClientConnection:
    """A joiner that asks to sync (empty state vector) and then reads nothing."""
    token = server.token("alice")
    if endpoint == "ws":
        socket = await websockets.connect(f"{server.ws_url}/{draft}?token={token}", max_size=None)
        socket.transport.pause_reading()
        await socket.send(create_sync_message(Doc()))
        return socket
    socket = await websockets.connect(f"ws://127.0.0.1:{server.port}/hocuspocus", max_size=None)
    socket.transport.pause_reading()
    auth = bytearray([2, 0])  # Auth, token
    write_var_string(auth, token)
    write_var_string(auth, "4.8.0")
    await socket.send(prefix(draft) + bytes(auth))
    await socket.send(prefix(draft) + encode_message(SyncStep1(b"\x00")))
    return socket


async def _read_sync_reply(socket: websockets.ClientConnection, endpoint: str) -> str:
    """Read on until the sync step 2; the title it holds."""
    socket.transport.resume_reading()
    async with asyncio.timeout(60):
        while True:
            data = await socket.recv()
            assert isinstance(data, bytes)
            offset = 0 if endpoint == "ws" else read_address(data)[1]
            if data[offset] != 0:  # not a sync message (auth, awareness)
                continue
            message = decode_message(data[offset:])
            if isinstance(message, SyncStep2):
                doc: Doc = Doc()
                doc.apply_update(message.update)
                return str(doc.get("title", type=Text))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
@pytest.mark.parametrize("endpoint", ["ws", "hocuspocus"])
async def test_joiners_that_do_not_read_hold_one_copy_of_the_reply_not_one_each(
    server: ServerProcess, endpoint: str
) -> None:
    draft = f"join-memory-{uuid.uuid4().hex[:8]}"
    text = "x" * DRAFT_CHARS
    alice = await connect_synced(server, draft, "alice")
    stalled: list[websockets.ClientConnection] = []
    try:
        await alice.edit(type_into(text))
        await alice.flush()
        # A first joiner makes the shared reply; from here each joiner costs its connection.
        first = await connect_synced(server, draft, "alice")
        await first.disconnect()
        assert first.text("title") == text
        process = server.process
        assert process is not None
        rss_before = _rss_bytes(process.pid)
        sent_before = await _bytes_sent(server)
        for _ in range(STALLED):
            stalled.append(await _stalled_joiner(server, draft, endpoint))

        async def all_replies_written() -> bool:
            return await _bytes_sent(server) - sent_before >= STALLED * DRAFT_CHARS

        await eventually(all_replies_written, timeout=30)
        grown = _rss_bytes(process.pid) - rss_before
        # One copy per joiner would be 16 x 6 MB, less what the kernel's socket buffers took.
        assert grown < 3 * DRAFT_CHARS, f"RSS grew {grown / 1e6:.0f} MB"
        titles = await asyncio.gather(*(_read_sync_reply(s, endpoint) for s in stalled))
        assert all(title == text for title in titles)
    finally:
        await asyncio.gather(*(socket.close() for socket in stalled), alice.disconnect())


# -- the framing itself, against the websockets library's -------------------------------------


@pytest.mark.parametrize(
    "length", [0, 1, 125, 126, 65_535, 65_536, SHARE_PAYLOAD_BYTES - 1, SHARE_PAYLOAD_BYTES]
)
def test_the_frame_header_is_the_one_websockets_writes(length: int) -> None:
    payload = bytes(length)
    frame = Frame(Opcode.BINARY, payload).serialize(mask=False)
    assert frame == binary_frame_header(length) + payload


def test_a_frame_header_carries_an_8_byte_length_for_large_payloads() -> None:
    header = binary_frame_header(5_000_000)
    assert header[:2] == b"\x82\x7f" and struct.unpack("!Q", header[2:]) == (5_000_000,)


def test_a_negative_length_has_no_header() -> None:
    with pytest.raises(struct.error):
        binary_frame_header(-1)
