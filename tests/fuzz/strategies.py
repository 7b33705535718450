"""Hypothesis strategies: real inputs from `bench.fuzz_corpus`, with drawn mutations.

The ops are drawn as the tuples `bench.fuzz_corpus.mutate` reads, so hypothesis shrinks a
failing input towards fewer, smaller mutations of a smaller seed.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from bench.fuzz_corpus import INTERESTING_BYTES, Op, mutate, update_frame, updates

__all__ = ["mutated", "mutated_update_frames", "ops"]

_INT = st.integers(min_value=0, max_value=2**16)

_OP: st.SearchStrategy[Op] = st.one_of(
    st.tuples(st.just("flip"), _INT, _INT),
    st.tuples(
        st.just("set"),
        _INT,
        st.one_of(_INT, st.integers(min_value=-len(INTERESTING_BYTES), max_value=-1)),
    ),
    st.tuples(st.just("insert"), _INT, _INT, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), _INT, _INT),
    st.tuples(st.just("truncate"), _INT, _INT),
    st.tuples(st.just("duplicate"), _INT, _INT),
    st.tuples(st.just("splice"), _INT, _INT, _INT),
    st.tuples(st.just("blowup"), _INT, _INT),
)

ops = st.lists(_OP, min_size=1, max_size=4)


def mutated(seeds: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """A seed with one to four mutations (the others seeds are what splices take from)."""
    return st.builds(lambda seed, drawn: mutate(seed, drawn, seeds), st.sampled_from(seeds), ops)


def mutated_update_frames() -> st.SearchStrategy[bytes]:
    """Well-framed update messages around a mutated update: past the framing, into yrs."""
    return mutated(updates()).map(update_frame)
