"""A document the server closed on a shared provider socket (access revoked: CLOSE 7) while
the provider keeps typing into it: the stock provider goes on sending that document's updates
and awareness after CLOSE (docs/hocuspocus-protocol.md), and none of it may pile up on the
socket or hurt the documents that stay open on it."""

from __future__ import annotations

from pycrdt import Text

from server.sync.hocuspocus import MAX_PENDING_MESSAGES
from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.rest import as_user, create_draft
from tests.support.server_process import ServerProcess
from tests.support.stored import stored_doc


async def bobs_draft_and_socket(server: ServerProcess) -> tuple[str, str, HocuspocusClient]:
    """A new draft of bob's, his token, and a Hocuspocus provider socket shared by documents."""
    async with as_user(server, "bob") as bob:
        own = str((await create_draft(bob, title=""))["id"])
    url = f"ws://127.0.0.1:{server.port}/hocuspocus"
    return own, server.token("bob"), await HocuspocusClient.launch(url, shared=True)


def title(server: ServerProcess, draft: str) -> str:
    return str(stored_doc(server.database, draft).get("title", type=Text))


async def type_past_the_queue_then_save_kept(hp: HocuspocusClient, ended: str) -> None:
    """Type more keystrokes into the `ended` document than a socket queues before an Auth,
    then write to `kept` on the same socket (answered after them): it saves, and the socket
    was never reset."""
    await hp.call("type_each", doc=ended, field="title", text="x" * (MAX_PENDING_MESSAGES + 50))
    await hp.call("insert", doc="kept", field="title", index=0, text="still saving")
    await hp.call("wait_saved", doc="kept")
    assert not [e for e in hp.events if e["event"] == "socket-disconnect"]


async def test_typing_into_a_revoked_document_leaves_the_sockets_other_documents_open(
    server: ServerProcess,
) -> None:
    """Bob edits alice's draft and his own over one socket; alice revokes him. He types more
    keystrokes into the revoked document than the socket may queue before an Auth: they are
    dropped, not queued (before, the socket was reset with 4205 "too much sent before auth"
    and his other document with it); his other document goes on saving."""
    async with as_user(server, "alice") as alice:
        shared = (await create_draft(alice, title="shared"))["id"]
        response = await alice.put(
            f"/api/drafts/{shared}/access", json={"user": "bob", "role": "editor"}
        )
        assert response.status_code == 200, response.text
    own, token, hp = await bobs_draft_and_socket(server)
    try:
        await hp.open("gone", shared, token)
        await hp.open("kept", own, token)
        await hp.call("wait_synced", doc="gone")
        await hp.call("wait_synced", doc="kept")
        async with as_user(server, "alice") as alice:
            response = await alice.put(
                f"/api/drafts/{shared}/access", json={"user": "bob", "role": "none"}
            )
            assert response.status_code == 200, response.text
        closed = await hp.wait_doc_event("gone", "close")
        assert closed["reason"] == "access revoked"

        await type_past_the_queue_then_save_kept(hp, "gone")
    finally:
        await hp.close()
    assert title(server, shared) == "shared"
    assert title(server, own) == "still saving"


async def test_typing_into_a_document_whose_auth_was_refused_leaves_the_others_open(
    server: ServerProcess,
) -> None:
    """Bob opens alice's draft, which is not shared with him (PermissionDenied), next to his
    own over one socket, and types into it anyway: dropped, not queued for an Auth that the
    provider does not send again on this socket; his own document goes on saving."""
    async with as_user(server, "alice") as alice:
        private = (await create_draft(alice, title="private"))["id"]
    own, token, hp = await bobs_draft_and_socket(server)
    try:
        await hp.open("kept", own, token)
        await hp.call("wait_synced", doc="kept")
        await hp.open("denied", private, token)
        await hp.wait_doc_event("denied", "authenticationFailed")

        await type_past_the_queue_then_save_kept(hp, "denied")
    finally:
        await hp.close()
    assert title(server, private) == "private"
    assert title(server, own) == "still saving"
