"""The gate (server/sync/gate.py) on its own: release by ticket, in order, and the relaxed rule."""

from __future__ import annotations

import asyncio

import pytest

from server.sync.gate import Gate, GateClosed


class Inbox:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes, *, update: bytes | None = None) -> None:
        self.frames.append(frame)


def test_a_message_waits_for_its_ticket_and_leaves_in_order() -> None:
    gate, alice, bob = Gate(), Inbox(), Inbox()
    first = gate.accept()
    gate.send([alice], b"relay-1", after=first)
    gate.send([bob], b"step2", after=first)
    second = gate.accept()
    gate.send([alice, bob], b"relay-2", after=second)
    assert alice.frames == bob.frames == []
    gate.commit(first)
    assert alice.frames == [b"relay-1"] and bob.frames == [b"step2"]
    gate.commit(second)
    assert alice.frames == [b"relay-1", b"relay-2"] and bob.frames == [b"step2", b"relay-2"]


def test_what_depends_on_nothing_uncommitted_goes_at_once() -> None:
    gate, alice = Gate(), Inbox()
    gate.commit(gate.accept())
    gate.send([alice], b"now", after=gate.accepted)
    gate.send([alice], b"durable already", after=0)
    assert alice.frames == [b"now", b"durable already"]


def test_relaxed_releases_at_acceptance() -> None:
    gate, alice = Gate(release_on_accept=True), Inbox()
    gate.send([alice], b"relay", after=gate.accept())
    assert alice.frames == [b"relay"] and gate.pending == 1


async def test_until_committed_waits_for_that_ticket_only() -> None:
    gate = Gate()
    first, second = gate.accept(), gate.accept()
    waiting_first = asyncio.create_task(gate.until_committed(first))
    waiting_all = asyncio.create_task(gate.until_committed())
    await asyncio.sleep(0)
    gate.commit(first)
    await asyncio.sleep(0)
    assert waiting_first.done() and not waiting_all.done()
    gate.commit(second)
    await asyncio.wait_for(waiting_all, 1)


async def test_a_closed_gate_drops_what_it_holds_and_fails_its_waiters() -> None:
    gate, alice = Gate(), Inbox()
    ticket = gate.accept()
    gate.send([alice], b"never", after=ticket)
    waiting = asyncio.create_task(gate.until_committed(ticket))
    await asyncio.sleep(0)
    gate.close("store failed")
    gate.commit(ticket)
    assert alice.frames == []
    with pytest.raises(GateClosed):
        await waiting
    with pytest.raises(GateClosed):
        await gate.until_committed()


def test_a_held_message_goes_to_those_it_was_given_for_but_the_excluded() -> None:
    gate, alice, bob, carol = Gate(), Inbox(), Inbox(), Inbox()
    present = {alice, bob}
    ticket = gate.accept()
    gate.send(present, b"relay", after=ticket, exclude=alice)
    present.add(carol)  # joins later: its own sync step 2 carries this content
    gate.commit(ticket)
    assert bob.frames == [b"relay"] and alice.frames == [] and carol.frames == []
