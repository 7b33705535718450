"""Bad input gets a clear answer, and nothing is lost (design.md, "Promises", "Close codes").

One test per class of bad input, each on a real server and real sockets, each proving three things:

1. the offending connection is closed with the documented code and a non-empty reason;
2. nothing of the bad message is applied: it smuggles the marker text `BAD` into `title`, and
   neither a client joining afterwards nor the store's update log ever shows it;
3. a client that was already in the room is untouched: it keeps editing, and it syncs both ways
   with the client that joins afterwards.

Also here: close reasons are cut to fit a close frame (pycrdt's errors can be longer than the
123 bytes RFC 6455 allows, and an unsendable reason used to cost the client its close code), and
the other side of 4403: a draft's owner is never refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from pycrdt import Doc, Text

from crdt.lib0 import encode_var_uint, write_var_bytes
from crdt.protocol import SyncStep1, Update, encode_message
from server.http.rest import operations
from server.sync.connection import fit_close_reason
from tests.support.pycrdt_client import PycrdtClient, connect_synced
from tests.support.raw_client import RawClient, connect_raw
from tests.support.server_process import ServerProcess
from tests.support.store_reader import draft_rows, stored_doc

MARKER = "BAD"
EXPECTED_TITLE = "before after fresh"
TIMEOUT = 10


def new_draft() -> str:
    return f"d-{uuid.uuid4().hex[:12]}"


def bad_update(text: str = MARKER) -> bytes:
    """A well-formed Yjs update that inserts `text` at the start of `title`."""
    doc: Doc = Doc(client_id=666_666)
    doc.get("title", type=Text).insert(0, text)
    return doc.get_update()


def update_frame(update: bytes) -> bytes:
    return encode_message(Update(update))


def with_payload(prefix: bytes, payload: bytes) -> bytes:
    out = bytearray(prefix)
    write_var_bytes(out, payload)
    return bytes(out)


async def append(client: PycrdtClient, text: str) -> None:
    def change(doc: Doc) -> None:
        title = doc.get("title", type=Text)
        title.insert(len(title), text)

    await client.edit(change)


@contextlib.asynccontextmanager
async def witnessed_room(server: ServerProcess) -> AsyncIterator[tuple[str, PycrdtClient]]:
    """A fresh draft owned by alice, with her editor (the witness) in it, having typed `before`."""
    draft = new_draft()
    witness = await connect_synced(server, draft)
    try:
        await append(witness, "before")
        yield draft, witness
    finally:
        await witness.disconnect()


async def assert_room_goes_on(server: ServerProcess, draft: str, witness: PycrdtClient) -> None:
    """The witness edits on; a newcomer gets exactly its text, and the two sync both ways."""
    assert not witness.closed.is_set(), "the witness was disconnected with the bad client"
    await append(witness, " after")
    fresh = await connect_synced(server, draft)
    try:
        await fresh.wait_for(lambda: fresh.text("title") == "before after", TIMEOUT)
        await append(fresh, " fresh")
        await witness.wait_for(lambda: witness.text("title") == EXPECTED_TITLE, TIMEOUT)
    finally:
        await fresh.disconnect()
    # " fresh" reached the witness, so it is committed (durable before visible), and so is
    # everything the room accepted before it.
    stored = str(stored_doc(server.database, draft).get("title", type=Text))
    assert stored == EXPECTED_TITLE


async def assert_refused(client: RawClient, code: int, reason_part: str) -> None:
    closed_code, reason = await client.wait_closed(TIMEOUT)
    assert closed_code == code, f"closed with {closed_code} ({reason!r}), expected {code}"
    assert reason, f"close code {code} came without a reason"
    assert reason_part in reason  # refused for the right cause, not by accident


async def send_bad_frame(
    server: ServerProcess, frame: bytes | str, code: int, reason_part: str
) -> None:
    """Send `frame` into a witnessed room, expect `code`, and check the room is unharmed."""
    async with witnessed_room(server) as (draft, witness):
        bad = await connect_raw(server.ws_url, draft, server.token("alice"))
        await bad.next_message(SyncStep1, timeout=TIMEOUT)  # joined: the frame meets the room
        await bad.send(frame)
        await assert_refused(bad, code, reason_part)
        await assert_room_goes_on(server, draft, witness)


# -- framing and message types (4400) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "reason_part"),
    [
        pytest.param(b"\x80", "truncated varUint", id="truncated-varint"),
        pytest.param(
            b"\x00\x02" + encode_var_uint(len(bad_update()) + 10) + bad_update(),
            "runs past the end",
            id="length-past-end",
        ),
        pytest.param(update_frame(bad_update()) + b"\x00", "unread bytes", id="leftover-bytes"),
    ],
)
async def test_malformed_frame_closes_4400(
    server: ServerProcess, frame: bytes, reason_part: str
) -> None:
    await send_bad_frame(server, frame, 4400, reason_part)


@pytest.mark.parametrize(
    ("frame", "reason_part"),
    [
        pytest.param(with_payload(b"\x07", bad_update()), "type 7", id="message-type-7"),
        pytest.param(with_payload(b"\x00\x03", bad_update()), "subtype 3", id="sync-subtype-3"),
    ],
)
async def test_unknown_message_type_closes_4400(
    server: ServerProcess, frame: bytes, reason_part: str
) -> None:
    await send_bad_frame(server, frame, 4400, reason_part)


async def test_text_frame_closes_4400(server: ServerProcess) -> None:
    # The bytes of a valid update frame, sent as text: a text frame is refused whatever it holds.
    frame = update_frame(bad_update()).decode("latin-1")
    await send_bad_frame(server, frame, 4400, "text frames")


@pytest.mark.parametrize(
    "update",
    [
        # pycrdt's error for this one makes a reason longer than a close frame can carry
        pytest.param(bad_update()[:-3], id="truncated-update"),
        pytest.param(bytes(range(1, 30)), id="garbage-update"),
    ],
)
async def test_undecodable_update_closes_4400(server: ServerProcess, update: bytes) -> None:
    await send_bad_frame(server, update_frame(update), 4400, "undecodable Yjs update")


def test_a_long_reason_is_cut_to_fit_a_close_frame() -> None:
    reason = "é" * 100  # 200 bytes of UTF-8; RFC 6455 leaves 123 for the reason
    fitted = fit_close_reason(reason)
    assert len(fitted.encode()) <= 123
    assert fitted.endswith("\u2026")
    assert reason.startswith(fitted.removesuffix("\u2026"))
    assert fit_close_reason("short") == "short"


# -- size (1009) -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_frames_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("small"), "--max-message-bytes", "65536")
    process.start()
    yield process
    process.stop()


async def test_message_over_max_size_closes_1009(small_frames_server: ServerProcess) -> None:
    frame = update_frame(bad_update(MARKER + "x" * 100_000))
    assert len(frame) > 100_000
    await send_bad_frame(small_frames_server, frame, 1009, "exceeds")


# -- who may connect (4401, 4403) and draft ids (4400) -----------------------------------------


def _expired(server: ServerProcess) -> str:
    return server.token("alice", ttl=1, now=time.time() - 3600)


@pytest.mark.parametrize(
    "token_of",
    [
        pytest.param(lambda server: None, id="missing"),
        pytest.param(lambda server: "not-a-token", id="garbage"),
        pytest.param(_expired, id="expired"),
    ],
)
async def test_bad_token_closes_4401(
    server: ServerProcess, token_of: Callable[[ServerProcess], str | None]
) -> None:
    token = token_of(server)
    async with witnessed_room(server) as (draft, witness):
        # an existing draft: whatever is sent right behind the upgrade is never applied
        intruder = await connect_raw(server.ws_url, draft, token)
        await intruder.send(update_frame(bad_update()))
        await assert_refused(intruder, 4401, "token")
        assert intruder.messages == [], "something of the draft was sent before the check"
        # an unknown draft: refusing the token creates nothing
        unknown = new_draft()
        creator = await connect_raw(server.ws_url, unknown, token)
        await assert_refused(creator, 4401, "token")
        assert draft_rows(server.database, unknown) == 0
        await assert_room_goes_on(server, draft, witness)


async def test_stranger_to_a_draft_closes_4403(server: ServerProcess) -> None:
    async with witnessed_room(server) as (draft, witness):
        stranger = await connect_raw(server.ws_url, draft, server.token("bob"))
        await stranger.send(update_frame(bad_update()))
        await assert_refused(stranger, 4403, "access")
        assert stranger.messages == [], "something of the draft was sent before the check"
        await assert_room_goes_on(server, draft, witness)


async def join_outcome(server: ServerProcess, draft: str, token: str, delay: float) -> int | None:
    """Connect after `delay`; None once the room greets us, else the close code."""
    await asyncio.sleep(delay)  # staggers arrivals across the race window; not a wait
    client = await connect_raw(server.ws_url, draft, token)
    try:
        await client.wait_for(lambda: bool(client.messages) or client.closed.is_set(), TIMEOUT)
        return client.close_code if client.closed.is_set() else None
    finally:
        await client.close()


@pytest.fixture(scope="module")
def storm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server where one user may open drafts as fast as a test likes: the race below needs
    up to 800 joins by its owner in seconds, past the per-user connect rate (its own tests:
    tests/server/test_admission.py), which would refuse them with 1013 and, on the module's
    shared server, every later join by the same user too."""
    process = ServerProcess(
        tmp_path_factory.mktemp("storm"), "--room-grace", "0.3", "--user-connect-burst", "1000000"
    )
    process.start()
    yield process
    process.stop()


async def test_the_owners_simultaneous_first_connections_are_all_accepted(
    storm_server: ServerProcess,
) -> None:
    server = storm_server
    token = server.token("alice")
    for trial in range(100):  # the window is narrow: try until it shows (most trials hit it)
        draft = new_draft()
        outcomes = await asyncio.gather(
            *(join_outcome(server, draft, token, i * 0.00075) for i in range(8))
        )
        assert set(outcomes) == {None}, f"trial {trial}: the owner was refused: {outcomes}"


@pytest.mark.parametrize(
    ("draft_id", "as_parsed"),
    [
        pytest.param("a.b", "a.b", id="dot"),
        pytest.param("a" * 129, "a" * 129, id="129-chars"),
        pytest.param("x%20y", "x y", id="escaped-space"),
        pytest.param("a/b", "a/b", id="slash"),
    ],
)
async def test_bad_draft_id_closes_4400_and_creates_nothing(
    server: ServerProcess, draft_id: str, as_parsed: str
) -> None:
    async with witnessed_room(server) as (draft, witness):
        bad = await connect_raw(server.ws_url, draft_id, server.token("alice"))
        await bad.send(update_frame(bad_update()))
        await assert_refused(bad, 4400, "draft id")
        assert bad.messages == []
        assert draft_rows(server.database, draft_id) == 0
        assert draft_rows(server.database, as_parsed) == 0
        await assert_room_goes_on(server, draft, witness)


# -- REST bodies (issue 27, point 6): every endpoint that reads a JSON body answers malformed
# JSON, depth bombs, wrong top-level types, invalid UTF-8 and numbers out of range with a 4xx
# and a reason; nothing reaches a 500.

# (method, path, the body key the endpoint reads); DRAFT is a draft alice owns.
BODY_ENDPOINTS = [
    ("POST", "/api/drafts", "title"),
    ("PUT", "/api/drafts/DRAFT/access", "user"),
    ("POST", "/api/drafts/DRAFT/restore", "version"),
    ("POST", "/api/drafts/DRAFT/versions", "label"),
    ("POST", "/api/drafts/DRAFT/conflicts/c-none/resolve", "value"),
    ("POST", "/api/token/renew", "draftId"),
]


def test_the_body_endpoints_are_every_operation_that_takes_a_body() -> None:
    """So that an endpoint added later is tested with the bad bodies below too."""
    named = {"{draft_id}": "DRAFT", "{conflict_id}": "c-none"}

    def tested_path(path: str) -> str:
        for parameter, value in named.items():
            path = path.replace(parameter, value)
        return path

    taking = {(op.method, tested_path(op.path)) for op in operations if op.body is not None}
    assert taking == {(method, path) for method, path, _ in BODY_ENDPOINTS}


BAD_BODIES = {
    "truncated": lambda key: b'{"' + key.encode() + b'": ',
    "trailing-garbage": lambda key: b'{"' + key.encode() + b'": 1} x',
    "depth-bomb": lambda key: b"[" * 100_000 + b"]" * 100_000,
    "depth-65": lambda key: b'{"' + key.encode() + b'": ' + b"[" * 64 + b"]" * 64 + b"}",
    "open-bomb": lambda key: b"{" * 50_000,
    "array": lambda key: b"[]",
    "string": lambda key: b'"x"',
    "number": lambda key: b"1",
    "null": lambda key: b"null",
    "not-utf8": lambda key: b'{"' + key.encode() + b'": "\xff\xfe"}',
    "utf16": lambda key: ('{"' + key + '": 1}').encode("utf-16"),
    "float-overflow": lambda key: b'{"' + key.encode() + b'": 1e999}',
    "negative-overflow": lambda key: b'{"' + key.encode() + b'": -1e999}',
    "int-400-digits": lambda key: b'{"' + key.encode() + b'": 1' + b"0" * 400 + b"}",
    "int-5000-digits": lambda key: b'{"' + key.encode() + b'": 1' + b"0" * 5000 + b"}",
    "nan": lambda key: b'{"' + key.encode() + b'": NaN}',
    # Valid JSON syntax, but no Unicode text: pycrdt and SQLite cannot encode it (was a 500).
    "lone-surrogate": lambda key: b'{"' + key.encode() + b'": "a\\ud800"}',
    "lone-surrogate-key": lambda key: b'{"\\udfff": 1}',
    # Not the empty body (taken as `{}`), and not JSON either (was `{}`: a 200 or a 201).
    "whitespace": lambda key: b" \n",
}


@pytest.fixture(scope="module")
def owned_draft(server: ServerProcess) -> str:
    draft = new_draft()
    answer = httpx.post(
        f"{server.http_url}/api/drafts",
        json={"id": draft},
        headers={"Authorization": f"Bearer {server.token('alice')}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return draft


@pytest.mark.parametrize("body", BAD_BODIES, ids=list(BAD_BODIES))
@pytest.mark.parametrize(
    ("method", "path", "key"), BODY_ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in BODY_ENDPOINTS]
)
async def test_every_rest_body_answers_bad_json_with_a_4xx_and_a_reason(
    server: ServerProcess, owned_draft: str, method: str, path: str, key: str, body: str
) -> None:
    async with httpx.AsyncClient(
        base_url=server.http_url,
        headers={"Authorization": f"Bearer {server.token('alice')}"},
        timeout=10,
    ) as api:
        answer = await api.request(
            method,
            path.replace("DRAFT", owned_draft),
            content=BAD_BODIES[body](key),
            headers={"content-type": "application/json"},
        )
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["detail"], answer.text
    if body in ("depth-bomb", "depth-65", "open-bomb"):
        assert answer.status_code == 400 and "nested too deeply" in answer.json()["detail"]
    if body in (
        *("truncated", "not-utf8", "utf16", "float-overflow", "int-5000-digits", "nan"),
        *("lone-surrogate", "lone-surrogate-key", "whitespace"),
    ):
        assert answer.status_code == 400 and "not valid JSON" in answer.json()["detail"]


async def test_a_surrogate_pair_escaped_in_a_body_is_one_character_and_accepted(
    server: ServerProcess,
) -> None:
    """The other side of "lone-surrogate": a pair (JSON's way to escape U+1F600) is text."""
    async with httpx.AsyncClient(
        base_url=server.http_url,
        headers={"Authorization": f"Bearer {server.token('alice')}"},
        timeout=10,
    ) as api:
        answer = await api.post(
            "/api/drafts",
            content=b'{"title": "a\\ud83d\\ude00"}',
            headers={"content-type": "application/json"},
        )
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"]["texts"]["title"] == "a\U0001f600"


@pytest.mark.parametrize(
    "path",
    [
        "/api/drafts/DRAFT/versions/" + "9" * 30,  # past SQLite's integers
        "/api/drafts/DRAFT/versions/1" + "0" * 5000,  # past int()'s 4300 digits
        "/api/drafts/DRAFT/versions/%C2%B2",  # "²": isdigit() yet not an int
        "/api/drafts/DRAFT/versions/%00",
        "/api/drafts/DRAFT/events?after=" + "9" * 30,
        "/api/drafts/DRAFT/events?after=1" + "0" * 5000,
        "/api/drafts/DRAFT/events?limit=%00",
        "/api/drafts?limit=" + "9" * 30,
        "/api/drafts?cursor=%00%FF",
        "/api/drafts/%00%0a",
        # Not integers, though Python's int() or pydantic's lax mode read one (were 200s).
        "/api/drafts/DRAFT/events?after=1_0",
        "/api/drafts/DRAFT/diff?from=%200",
        "/api/drafts/DRAFT/diff?from=0&to=0.0",
        "/api/drafts/DRAFT/webhooks?limit=%2B5",
        "/api/drafts?limit=1_0",
        "/api/dashboard?limit=10%20",
        # Counts and ranges out of their bounds (the draft is empty: 2 is past its last version).
        "/api/drafts/DRAFT/events?limit=0",
        "/api/drafts/DRAFT/events?limit=-1",
        "/api/drafts/DRAFT/events?limit=1001",
        "/api/drafts/DRAFT/events?after=-1",
        "/api/drafts/DRAFT/versions/-1",
        "/api/drafts/DRAFT/versions/2",
        "/api/drafts/DRAFT/diff?from=2",
        "/api/drafts/DRAFT/diff?from=0&to=-1",
        "/api/drafts/DRAFT/diff?from=0&to=" + "9" * 19,
        "/api/drafts?limit=0",
        "/api/drafts?limit=201",
    ],
    ids=lambda path: path[:60],
)
async def test_numbers_and_bytes_out_of_range_in_a_path_or_query_are_a_4xx(
    server: ServerProcess, owned_draft: str, path: str
) -> None:
    async with httpx.AsyncClient(
        base_url=server.http_url,
        headers={"Authorization": f"Bearer {server.token('alice')}"},
        timeout=10,
    ) as api:
        answer = await api.get(path.replace("DRAFT", owned_draft))
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["detail"], answer.text


# -- REST bodies must be declared JSON (415): a cross-site page can send these three types
# without a CORS preflight, with the user's cookies (an embedding host's `authenticate` may read
# them); a missing type is refused too. Each body is the JSON a forger would send.

NOT_JSON_TYPES = {
    "text-plain": "text/plain",
    "form-urlencoded": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data; boundary=x",
    "missing": None,
}


async def send_typed(
    server: ServerProcess, method: str, path: str, content: bytes, content_type: str | None
) -> httpx.Response:
    # httpx adds no Content-Type for `content=`: what is given here is all that is sent
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=10) as api:
        return await api.request(method, path, content=content)


@pytest.mark.parametrize("content_type", NOT_JSON_TYPES, ids=list(NOT_JSON_TYPES))
@pytest.mark.parametrize(
    ("method", "path", "key"), BODY_ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in BODY_ENDPOINTS]
)
async def test_every_rest_body_not_declared_json_is_a_415(
    server: ServerProcess, owned_draft: str, method: str, path: str, key: str, content_type: str
) -> None:
    body = b'{"' + key.encode() + b'": "x"}'
    answer = await send_typed(
        server, method, path.replace("DRAFT", owned_draft), body, NOT_JSON_TYPES[content_type]
    )
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"] == "unsupported_media_type"
    assert "application/json" in answer.json()["detail"]
    assert_names_what_is_accepted(answer, method)


def assert_names_what_is_accepted(answer: httpx.Response, method: str) -> None:
    """RFC 9110 15.5.16 and RFC 5789 3.2: a 415 to a POST names the types the endpoint takes
    (`Accept-Post`); to a PATCH, `Accept-Patch`. PUT has no such header."""
    expected = {
        "accept-post": "application/json" if method == "POST" else None,
        "accept-patch": "application/json" if method == "PATCH" else None,
    }
    assert {name: answer.headers.get(name) for name in expected} == expected


@pytest.mark.parametrize("charset", ["latin-1", "ISO-8859-1", '"utf-16"', "us-ascii", "utf-7", ""])
@pytest.mark.parametrize(
    ("method", "path", "key"), BODY_ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in BODY_ENDPOINTS]
)
async def test_a_json_body_declared_in_a_charset_other_than_utf8_is_a_415(
    server: ServerProcess, owned_draft: str, method: str, path: str, key: str, charset: str
) -> None:
    """RFC 8259 8.1: JSON is UTF-8. A body declared in another charset was read as UTF-8
    anyway: `café` sent in Latin-1 was a 400 (not UTF-8), and the UTF-8 bytes of `cafÃ©`
    declared Latin-1 were stored as `café`, not what the client meant."""
    draft = new_draft()
    fields = {"id": draft, "title": "cafÃ©"} if path == "/api/drafts" else {key: "x"}
    body = json.dumps(fields, ensure_ascii=False)
    answer = await send_typed(
        server,
        method,
        path.replace("DRAFT", owned_draft),
        body.encode(),
        f"application/json; charset={charset}",
    )
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"] == "unsupported_media_type"
    assert "UTF-8" in answer.json()["detail"]
    assert_names_what_is_accepted(answer, method)
    assert draft_rows(server.database, draft) == 0


@pytest.mark.parametrize("content_type", NOT_JSON_TYPES, ids=list(NOT_JSON_TYPES))
async def test_a_forged_create_or_share_changes_nothing(
    server: ServerProcess, owned_draft: str, content_type: str
) -> None:
    """What a cross-site form would do as alice: create a draft, share hers with mallory."""
    draft = new_draft()
    kind = NOT_JSON_TYPES[content_type]
    created = await send_typed(
        server, "POST", "/api/drafts", b'{"id": "%s"}' % draft.encode(), kind
    )
    assert created.status_code == 415, created.text
    share = b'{"user": "mallory", "role": "owner"}'
    shared = await send_typed(server, "PUT", f"/api/drafts/{owned_draft}/access", share, kind)
    assert shared.status_code == 415, shared.text
    async with httpx.AsyncClient(
        base_url=server.http_url,
        headers={"Authorization": f"Bearer {server.token('alice')}"},
        timeout=10,
    ) as api:
        assert (await api.get(f"/api/drafts/{draft}")).status_code == 404
        access = (await api.get(f"/api/drafts/{owned_draft}/access")).json()
    assert "mallory" not in str(access)
    assert draft_rows(server.database, draft) == 0


async def test_a_chunked_body_without_a_type_is_a_415(server: ServerProcess) -> None:
    """No Content-Length to refuse it unread: it is refused once read."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": '
        yield b'"x"}'

    async with httpx.AsyncClient(
        base_url=server.http_url,
        headers={"Authorization": f"Bearer {server.token('alice')}"},
        timeout=10,
    ) as api:
        answer = await api.post("/api/drafts", content=chunks())
    assert "content-length" not in answer.request.headers
    assert answer.status_code == 415, answer.text


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON ;charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/json;CHARSET=Utf-8; q=x",
        "application/json; charset=utf8",  # a WHATWG label of UTF-8
        "application/merge-patch+json",
        "application/vnd.draftsync+json",
    ],
)
async def test_a_body_declared_json_is_read(server: ServerProcess, content_type: str) -> None:
    answer = await send_typed(server, "POST", "/api/drafts", b'{"title": "typed"}', content_type)
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"]["texts"]["title"] == "typed"


@pytest.mark.parametrize("content_type", ["application/jsonx", "text/json", "application/+json"])
async def test_near_json_types_are_a_415(server: ServerProcess, content_type: str) -> None:
    answer = await send_typed(server, "POST", "/api/drafts", b'{"title": "x"}', content_type)
    assert answer.status_code == 415, answer.text


async def test_an_empty_body_needs_no_type(server: ServerProcess) -> None:
    """No byte is `{}` (a draft with defaults), whatever the type says or if there is none."""
    for content_type in (None, "text/plain"):
        answer = await send_typed(server, "POST", "/api/drafts", b"", content_type)
        assert answer.status_code == 201, answer.text
