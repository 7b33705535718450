"""Bytes flipped, cut or inserted at random: what the decoders' fast readers are checked with
(whatever a fast reader answers for a mutated update, the general decoder must answer too)."""

from __future__ import annotations

import random

__all__ = ["mutated"]


def mutated(data: bytes, rng: random.Random) -> bytes:
    """`data` with one to three changes: a byte replaced (often by a varUint's continuation
    bit, 0xFF, 0x7F or 0), the rest cut off, or a byte inserted."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not out:
            break
        at = rng.randrange(len(out))
        match rng.randrange(3):
            case 0:
                out[at] = rng.choice([rng.randrange(256), out[at] ^ 0x80, 0xFF, 0x7F, 0])
            case 1:
                del out[at:]
            case _:
                out.insert(at, rng.randrange(256))
    return bytes(out)
