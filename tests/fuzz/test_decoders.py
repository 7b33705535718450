"""Fuzzing the pure decoders with mutated real input (issue 21, point 5): fixed seed, bounded.

Properties, for every decoder the server hands a client's bytes to (`bench.fuzz_corpus
.TARGETS`):

1. bad input raises only `crdt.errors.ProtocolError` subclasses (never IndexError,
   struct.error, RecursionError, UnicodeDecodeError, OverflowError, MemoryError...);
2. the work is linear in the input: the Python lines a decoder runs stay under
   `LINES_PER_BYTE` per byte (`tests/fuzz/work.py`: counted, not timed; the count also cuts off
   a decoder that would hang);
3. our decoder and yrs agree where the server relies on it: whatever pycrdt accepts, our
   decoder reads the state pycrdt then writes (the semantic index decodes it), and an update
   our decoder accepts never kills the process that applies it (yrs runs in a child process:
   it can panic, or crash on deep nesting).

`bench fuzz` runs the same targets for 10^6 inputs (README, "Fuzzing").
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map, Text

from bench.fuzz import seeds_for
from bench.fuzz_corpus import TARGETS, mutate, update_frame, updates
from crdt.awareness import AwarenessEntry, encode_awareness_update
from crdt.errors import ProtocolError
from crdt.limits import RunScan
from crdt.protocol import Awareness, encode_message
from crdt.updates import decode_update
from tests.crdt.test_limits import UNLIMITED
from tests.fuzz.strategies import mutated, mutated_update_frames
from tests.fuzz.work import lines_run
from tests.fuzz.yrs_oracle import YrsOracle

LINES_PER_BYTE = 64
"""Measured: decode_update runs ~15 lines a byte on real updates; FieldIndex ~25."""
BASE_LINES = 5_000


def work_limit(data: bytes) -> int:
    return LINES_PER_BYTE * len(data) + BASE_LINES


FUZZ = settings(
    derandomize=True,
    max_examples=400,
    deadline=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),  # no explain: it traces too
    suppress_health_check=[HealthCheck.too_slow],
)


def check(target: str, data: bytes) -> None:
    """Property 1 and 2 for one input."""
    _, error = lines_run(TARGETS[target], data, work_limit(data))
    if error is not None and not isinstance(error, ProtocolError):
        raise AssertionError(
            f"{target} raised {type(error).__name__}: {error} on {data.hex()}"
        ) from error


@pytest.mark.parametrize("target", list(TARGETS))
def test_the_real_corpus_decodes_within_the_work_bound(target: str) -> None:
    for data in seeds_for(target):
        check(target, data)


@pytest.mark.parametrize("target", list(TARGETS))
@FUZZ
@given(data=st.data())
def test_mutated_input_raises_only_protocol_errors_in_linear_work(
    target: str, data: st.DataObject
) -> None:
    check(target, data.draw(mutated(seeds_for(target))))


@FUZZ
@given(frame=mutated_update_frames())
def test_well_framed_updates_with_mutated_payloads(frame: bytes) -> None:
    check("decode_message", frame)


@given(payload=mutated(seeds_for("decode_awareness_update")))
@FUZZ
def test_awareness_frames_with_mutated_payloads(payload: bytes) -> None:
    check("decode_message", encode_message(Awareness(payload)))
    check("decode_awareness_update", payload)


# -- big inputs: the work per byte does not grow with size -----------------------------------


def _long_typing(chars: int) -> bytes:
    doc: Doc = Doc(client_id=7)
    text = doc.get("title", type=Text)
    for i in range(chars):
        text.insert(i // 2, "ab😀"[i % 3])  # interleaved: one item per keystroke
    return doc.get_update()


def _many_keys(keys: int) -> bytes:
    doc: Doc = Doc(client_id=8)
    fields = doc.get("fields", type=Map)
    for i in range(keys):
        fields[f"key{i % (keys // 4)}"] = {"n": i, "tags": ["x", i / 3]}
    return doc.get_update()


@cache
def big_inputs() -> tuple[tuple[str, bytes], ...]:
    return tuple(_big_inputs())


def _big_inputs() -> Iterator[tuple[str, bytes]]:
    typing, keys = _long_typing(4_500), _many_keys(3_000)
    awareness = encode_awareness_update(
        AwarenessEntry(i, i, f'{{"user":{{"name":"u{i}"}}}}') for i in range(2_500)
    )
    for update in (typing, keys):
        assert 16_384 < len(update) <= 65_536
        for target in ("decode_update", "check_nesting", "FieldIndex", "first_client_id"):
            yield target, update
        yield "decode_message", update_frame(update)
        # a blown-up length or count in the middle, and a cut: refused within the bound
        for ops in ([("blowup", len(update) // 2, 2)], [("truncate", len(update) // 3, 0)]):
            yield "decode_update", mutate(update, ops, ())
            yield "FieldIndex", mutate(update, ops, ())
    yield "decode_awareness_update", awareness
    yield "decode_message", encode_message(Awareness(awareness))
    nested = b"\x01\x01\x05\x00\x28\x01\x06fields\x01k\x01" + b"\x75\x01" * 30_000 + b"\x7e\x00"
    yield "check_nesting", nested  # 30,000 levels: yrs would crash, we refuse at 256
    yield "decode_update", nested


BIG_CASES = 22  # what _big_inputs yields


def test_there_are_big_cases() -> None:
    assert len(big_inputs()) == BIG_CASES


@pytest.mark.parametrize("case", range(BIG_CASES))
def test_large_inputs_stay_within_the_linear_work_bound(case: int) -> None:
    target, data = big_inputs()[case]
    check(target, data)


# -- our decoder and yrs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def yrs() -> Iterator[YrsOracle]:
    with YrsOracle() as oracle:
        yield oracle


def test_yrs_accepts_the_real_corpus(yrs: YrsOracle) -> None:
    refused = [u.hex() for u in updates() if yrs.apply(u).status != "accepted"]
    # The one ContentJSON update (ref 2, as Yjs writes it): yrs reads count + 1 strings.
    assert len(refused) == 1 and refused[0][8:10] == "22", refused


@settings(FUZZ, max_examples=250)
@given(update=mutated(updates()))
def test_yrs_and_our_decoder_agree_on_mutated_updates(yrs: YrsOracle, update: bytes) -> None:
    verdict = yrs.apply(update)
    try:
        decode_update(update)
        ours_accepts = True
    except ProtocolError:
        ours_accepts = False
    if ours_accepts:
        assert verdict.status != "died", f"yrs died applying {update.hex()}"
    if verdict.status == "accepted" and b"\x22" not in verdict.detail:
        # yrs's own output (no ContentJSON: yrs writes it so that it cannot read it back)
        # is what the semantic index reads: our decoder must read all of it.
        decode_update(verdict.detail)


@FUZZ
@given(update=mutated(updates()))
def test_the_limits_walk_reads_the_same_clock_runs_as_the_decoder(update: bytes) -> None:
    """The gap check reads where a large update's runs of clocks start from the limits' walk
    (off the event loop: decoding a 40,000-item update took ~170 ms on it), so the walk must
    read them as `decode_update` does, for every update both can read."""
    try:
        decoded = decode_update(update).starts
    except ProtocolError:
        return
    scan = RunScan(UNLIMITED)
    try:
        scan.add(update)
    except ProtocolError:
        return
    assert scan.starts == [decoded]
