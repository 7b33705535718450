"""The awareness table's rules (server/sync/presence.py) and the relay pacing
(server/sync/pacing.py), without a server: owners, clocks, limits, departures, coalescing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.awareness import AwarenessEntry, decode_awareness_update, encode_awareness_update
from crdt.errors import MalformedMessage
from server.errors import AwarenessLimitExceeded, CloseCode, close_code_for
from server.sync.pacing import AwarenessPacer
from server.sync.presence import MAX_CLOCK_STEP, MAX_ENTRIES, AwarenessLimits, Presence

BOB, EVE = object(), object()


def update(*entries: tuple[int, int, object]) -> bytes:
    return encode_awareness_update(
        AwarenessEntry(client_id, clock, json.dumps(state)) for client_id, clock, state in entries
    )


def states(presence: Presence) -> dict[int, tuple[int, object]]:
    full = presence.full_update()
    if full is None:
        return {}
    return {e.client_id: (e.clock, json.loads(e.state_json)) for e in decode_awareness_update(full)}


def test_the_first_sender_of_an_id_owns_it_and_no_one_else_changes_it() -> None:
    presence = Presence()
    assert presence.apply(BOB, update((7, 1, {"name": "bob"}))).entries
    forged = presence.apply(EVE, update((7, 2, {"name": "fake"}), (7, 3, None), (9, 1, {"n": 1})))
    assert forged.dropped == 2
    assert [e.client_id for e in forged.entries] == [9]  # its own id is still taken
    assert states(presence) == {7: (1, {"name": "bob"}), 9: (1, {"n": 1})}
    assert presence.owned_by(BOB) == {7} and presence.owned_by(EVE) == {9}


def test_the_owner_removes_and_sets_again_keeping_the_id() -> None:
    presence = Presence()
    presence.apply(BOB, update((7, 1, {"a": 1})))
    assert presence.apply(BOB, update((7, 2, None))).entries == [AwarenessEntry(7, 2, "null")]
    assert len(presence) == 0 and presence.full_update() is None
    assert presence.apply(EVE, update((7, 3, {"fake": 1}))).dropped == 1
    assert presence.apply(BOB, update((7, 3, {"a": 2}))).entries
    assert states(presence) == {7: (3, {"a": 2})}


@pytest.mark.parametrize(
    ("clock", "taken"),
    [(4, False), (5, False), (6, True), (5 + MAX_CLOCK_STEP, True), (6 + MAX_CLOCK_STEP, False)],
)
def test_a_clock_goes_forward_by_a_bounded_step(clock: int, taken: bool) -> None:
    presence = Presence()
    presence.apply(BOB, update((7, 5, {"a": 1})))
    applied = presence.apply(BOB, update((7, clock, {"a": 2})))
    assert bool(applied.entries) is taken
    assert states(presence)[7] == ((clock, {"a": 2}) if taken else (5, {"a": 1}))


def test_at_an_equal_clock_only_a_removal_wins() -> None:
    presence = Presence()
    presence.apply(BOB, update((7, 5, {"a": 1})))
    assert presence.apply(BOB, update((7, 5, None))).entries == [AwarenessEntry(7, 5, "null")]


def test_a_first_clock_may_be_anything_a_reconnecting_client_kept() -> None:
    presence = Presence()
    assert presence.apply(BOB, update((7, 10**9, {"a": 1}))).entries


def test_a_departed_id_is_removed_at_the_next_clock_and_not_resurrected_by_an_echo() -> None:
    presence = Presence()
    presence.apply(BOB, update((7, 5, {"a": 1})))
    gone = presence.release(BOB)
    assert gone is not None and decode_awareness_update(gone) == [AwarenessEntry(7, 6, "null")]
    assert presence.release(BOB) is None
    # Eve echoes bob's last state, then the removal: neither changes anything.
    assert presence.apply(EVE, update((7, 5, {"a": 1}), (7, 6, None))).dropped == 2
    assert presence.full_update() is None and presence.owned_by(EVE) == set()
    # Bob, back on a new connection, appears with his next change past the removal.
    assert not presence.apply(BOB, update((7, 6, {"a": 1}))).entries
    assert presence.apply(BOB, update((7, 7, {"a": 1}))).entries


def test_a_removal_its_owner_made_is_announced_again_when_the_owner_goes() -> None:
    # The owner's own removal may still wait for its paced relay when the owner goes.
    presence = Presence()
    presence.apply(BOB, update((7, 5, {"a": 1})))
    presence.apply(BOB, update((7, 6, None)))
    gone = presence.release(BOB)
    assert gone is not None and decode_awareness_update(gone) == [AwarenessEntry(7, 6, "null")]


def test_a_connection_owns_at_most_max_states_ids() -> None:
    presence = Presence(AwarenessLimits(max_states=2))
    presence.apply(EVE, update((1, 1, {})))
    with pytest.raises(AwarenessLimitExceeded, match="over 2 client ids"):
        presence.apply(EVE, update((2, 1, {}), (3, 1, {})))
    assert set(states(presence)) == {1}  # nothing of the refused update is kept
    assert presence.apply(EVE, update((2, 1, {}), (1, 2, {}))).entries
    assert close_code_for(AwarenessLimitExceeded("x")) is CloseCode.MALFORMED


def test_a_connection_holds_at_most_max_bytes_of_states() -> None:
    presence = Presence(AwarenessLimits(max_bytes=100))
    presence.apply(EVE, update((1, 1, "x" * 40)))
    with pytest.raises(AwarenessLimitExceeded, match="at most 100"):
        presence.apply(EVE, update((2, 1, "y" * 60)))
    assert presence.apply(EVE, update((1, 2, "x" * 90))).entries  # replacing, not adding
    assert presence.owned_by(EVE) == {1}


def test_a_state_that_is_not_json_is_malformed_and_kept_nowhere() -> None:
    presence = Presence()
    payload = encode_awareness_update([AwarenessEntry(1, 1, "{"), AwarenessEntry(2, 1, "{}")])
    with pytest.raises(MalformedMessage, match="not JSON"):
        presence.apply(EVE, payload)
    assert presence.full_update() is None and presence.owned_by(EVE) == set()


def test_another_instance_owns_its_clients_and_frees_an_id_on_removal() -> None:
    presence = Presence(AwarenessLimits(max_states=1))
    many = update(*((i, 1, {}) for i in range(5)))
    assert len(presence.apply_remote("b", many).entries) == 5  # bounded on its instance
    assert presence.apply(BOB, update((3, 2, {"fake": 1}))).dropped == 1
    assert presence.apply_remote("b", update((3, 2, None))).entries
    assert presence.owned_by("b") == {0, 1, 2, 4}
    gone = presence.release("b", {0, 1, 99})
    assert gone is not None and {e.client_id for e in decode_awareness_update(gone)} == {0, 1}
    assert set(states(presence)) == {2, 4}


async def test_the_pacer_relays_at_once_then_coalesces_to_the_latest_per_id() -> None:
    relayed: list[list[AwarenessEntry]] = []
    arrived = asyncio.Event()

    def relay(payload: bytes) -> None:
        relayed.append(decode_awareness_update(payload))
        arrived.set()

    pacer = AwarenessPacer(20, relay)
    pacer.push([AwarenessEntry(1, 1, "{}")])
    assert relayed == [[AwarenessEntry(1, 1, "{}")]]  # a lone change is not delayed
    for clock in range(2, 50):
        pacer.push([AwarenessEntry(1, clock, "{}"), AwarenessEntry(2, clock, "{}")])
    assert len(relayed) == 1 and pacer.pending == 2
    arrived.clear()
    await asyncio.wait_for(arrived.wait(), 1)  # one interval (50 ms) later
    assert relayed[1] == [AwarenessEntry(1, 49, "{}"), AwarenessEntry(2, 49, "{}")]
    pacer.push([AwarenessEntry(1, 50, "{}")])
    pacer.cancel()
    await asyncio.sleep(0.1)  # two intervals: a relay not cancelled would have gone
    assert len(relayed) == 2 and pacer.pending == 0


ops = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "remote"]),
        st.lists(
            st.tuples(
                st.integers(0, 12),
                st.integers(0, 8),
                st.one_of(st.none(), st.integers(0, 3).map(lambda n: {"n": "x" * n})),
            ),
            max_size=5,
        ),
        st.booleans(),  # leave after sending
    ),
    max_size=30,
)


@given(ops)
def test_the_table_stays_consistent_whatever_is_sent(steps: list[Any]) -> None:
    presence = Presence(AwarenessLimits(max_states=3, max_bytes=40))
    owners = ["a", "b", "c", "remote"]  # the last an instance: not bounded here
    for owner, entries, leave in steps:
        before = {o: presence.owned_by(o) for o in owners}
        try:
            if owner == "remote":
                applied = presence.apply_remote(owner, update(*entries))
            else:
                applied = presence.apply(owner, update(*entries))
        except AwarenessLimitExceeded:
            assert {o: presence.owned_by(o) for o in owners} == before
        else:
            others = set().union(*(before[o] for o in owners if o != owner))
            assert not {e.client_id for e in applied.entries} & others
        if leave:
            presence.release(owner)
        held = [presence.owned_by(o) for o in owners]
        assert sum(map(len, held)) == len(set().union(*held))  # one owner an id
        assert all(len(ids) <= 3 for ids in held[:-1])
        present = states(presence)
        assert len(presence) == len(present) and set(present) <= set().union(*held)
    for owner in owners:
        presence.release(owner)
    assert len(presence) == 0 and presence.full_update() is None


def _run(presence: Presence, step: Any) -> None:
    owner, entries, leave = step
    try:
        if owner == "remote":
            presence.apply_remote(owner, update(*entries))
        else:
            presence.apply(owner, update(*entries))
    except AwarenessLimitExceeded:
        pass
    if leave:
        presence.release(owner)


@settings(max_examples=60, deadline=None)  # each example replays its steps once a step
@given(ops)
def test_the_full_update_kept_between_changes_is_the_table_as_it_is(steps: list[Any]) -> None:
    """`full_update` is encoded once per change and shared by every asker: asked after every
    step, it is what a table that never answered before would encode after the same steps."""
    limits = AwarenessLimits(max_states=3, max_bytes=40)  # room for two states an owner
    presence = Presence(limits)
    for done, step in enumerate(steps, 1):
        _run(presence, step)
        fresh = Presence(limits)
        for earlier in steps[:done]:
            _run(fresh, earlier)
        assert presence.full_update() == fresh.full_update()


def test_query_awareness_is_answered_without_encoding_the_table_again() -> None:
    presence = Presence()
    presence.apply(BOB, update((7, 1, {"name": "bob"})))
    first = presence.full_update()
    assert presence.full_update() is first  # the same bytes, not another encode
    presence.apply(EVE, update((9, 1, {"name": "eve"})))
    second = presence.full_update()
    assert second is not first and presence.full_update() is second
    presence.release(EVE)
    assert presence.full_update() == first


def test_an_echo_of_a_room_larger_than_max_entries_is_taken_and_more_is_refused() -> None:
    """A stock y-websocket client echoes every state it hears: in a room of more than
    MAX_ENTRIES ids its echo names them all, and must not be refused as an attack. Past the
    room's ids plus MAX_ENTRIES the count alone is refused, before anything is decoded."""
    presence = Presence()
    room = MAX_ENTRIES + 100
    for client_id in range(1, room + 1):
        presence.apply(object(), update((client_id, 1, {"n": client_id})))
    echo = update(*((client_id, 1, {"n": client_id}) for client_id in range(1, room + 1)))
    assert presence.apply(EVE, echo).dropped == room  # taken, every entry someone else's
    flood = [(room + i, 1, None) for i in range(1, MAX_ENTRIES + room + 2)]
    with pytest.raises(AwarenessLimitExceeded, match="entries in one update"):
        presence.apply(EVE, update(*flood))
    assert len(presence) == room
