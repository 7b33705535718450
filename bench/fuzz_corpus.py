"""What the fuzzers feed the decoders: real frames, and the mutations that break them.

Random bytes almost never get past a frame's first varUint, so fuzzing starts from real input:
Yjs updates that pycrdt writes (text typing with formats and embeds, a map of JSON values,
arrays, deletes, an XmlFragment, nested types, a subdocument, two clients merged) and the
y-protocols frames a client sends (sync step 1/2, update, awareness, query awareness, auth,
write ack). Everything is built with fixed client ids and guids, so the corpus is the same
bytes on every run and a seed reproduces a run.

A mutation is a plain tuple (`Op`), so that hypothesis can draw and shrink it
(`tests/fuzz/strategies.py`) and the long run can draw it from a seeded `random.Random`
(`random_ops`); `mutate` applies either the same way.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from crdt.awareness import AwarenessEntry, decode_awareness_update, encode_awareness_update
from crdt.fields import FieldIndex
from crdt.lib0 import encode_var_uint, write_var_string, write_var_uint
from crdt.limits import count_update
from crdt.protocol import (
    Auth,
    Awareness,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    Update,
    WriteAck,
    decode_message,
    encode_message,
)
from crdt.updates import check_nesting, decode_update, first_client_id

__all__ = [
    "INTERESTING_BYTES",
    "OP_KINDS",
    "TARGETS",
    "Op",
    "awareness_payloads",
    "frames",
    "mutate",
    "random_ops",
    "update_frame",
    "updates",
]

Op = tuple[Any, ...]
"""One mutation: (kind, *ints). Positions are taken modulo the input's length, so any ints
describe a valid mutation of any input."""

OP_KINDS = ("flip", "set", "insert", "delete", "truncate", "duplicate", "splice", "blowup")

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x75, 0x76, 0x77)
"""Boundaries of varUint groups, and the lib0 Any tags of array (u), object (v), string (w)."""


# -- the corpus ------------------------------------------------------------------------------


def _typing() -> list[bytes]:
    doc: Doc = Doc(client_id=11)
    text = doc.get("title", type=Text)
    out = []
    for i, char in enumerate("Hello, wörld 👋"):
        before = doc.get_state()
        text.insert(i, char)
        out.append(doc.get_update(before))
    before = doc.get_state()
    text.format(0, 5, {"bold": True})
    text.insert_embed(3, {"image": "x.png"})
    del text[6:9]
    out.append(doc.get_update(before))
    out.append(doc.get_update())
    return out


def _map_values() -> list[bytes]:
    doc: Doc = Doc(client_id=22)
    fields = doc.get("fields", type=Map)
    out = []
    values: list[Any] = [
        "draft",
        42,
        -7,
        3.25,
        True,
        None,
        [1, "two", [3.5, {"four": 4}]],
        {"nested": {"deep": [1, 2, {"x": None}]}},
        "2**53",
        2**40,
    ]
    for i, value in enumerate(values):
        before = doc.get_state()
        fields[f"k{i % 4}"] = value  # overwrites: deleted runs and origins
        out.append(doc.get_update(before))
    before = doc.get_state()
    del fields["k1"]
    out.append(doc.get_update(before))
    out.append(doc.get_update())
    return out


def _arrays_and_nesting() -> list[bytes]:
    doc: Doc = Doc(client_id=33)
    items = doc.get("tags", type=Array)
    items.extend(["a", 1, 2.5, b"\x00\xff", None])
    items.append(Map({"inner": Array([1, 2, Text("t")])}))
    before = doc.get_state()
    del items[1:3]
    deletes = doc.get_update(before)
    sub = doc.get("docs", type=Map)
    sub["child"] = Doc(guid="00000000-0000-4000-8000-000000000000")
    return [deletes, doc.get_update()]


def _xml() -> list[bytes]:
    doc: Doc = Doc(client_id=44)
    fragment = doc.get("body", type=XmlFragment)
    paragraph = fragment.children.append(XmlElement("paragraph", {"align": "left"}))
    paragraph.children.append(XmlText("first line"))
    fragment.children.append(XmlText("second"))
    return [doc.get_update()]


def _two_clients() -> list[bytes]:
    a: Doc = Doc(client_id=55)
    b: Doc = Doc(client_id=66)
    a.get("fields", type=Map)["status"] = "draft"
    b.apply_update(a.get_update())
    a.get("fields", type=Map)["status"] = "review"
    b.get("fields", type=Map)["status"] = "final"
    b.get("title", type=Text).insert(0, "b was here")
    a.apply_update(b.get_update())
    return [a.get_update(), b.get_update(a.get_state())]


def _json_content() -> bytes:
    """A ContentJSON item (ref 2): old Yjs writes it, pycrdt never does."""
    out = bytearray()
    for value in (1, 1, 77, 0):  # one group, one struct, client 77, clock 0
        write_var_uint(out, value)
    out.append(0x20 | 2)  # parentSub + ContentJSON
    write_var_uint(out, 1)
    write_var_string(out, "fields")
    write_var_string(out, "legacy")
    write_var_uint(out, 2)
    write_var_string(out, '{"a": [1, 2]}')
    write_var_string(out, "undefined")
    write_var_uint(out, 0)
    return bytes(out)


@cache
def updates() -> tuple[bytes, ...]:
    """Real Yjs updates v1, smallest first (the cheap seeds mutate fastest)."""
    found = {*_typing(), *_map_values(), *_arrays_and_nesting(), *_xml(), *_two_clients()}
    found.add(_json_content())
    found.add(b"\x00\x00")  # the empty update
    return tuple(sorted(found, key=lambda u: (len(u), u)))


@cache
def awareness_payloads() -> tuple[bytes, ...]:
    entries = [
        AwarenessEntry(11, 1, '{"user":{"name":"alice","color":"#f00"},"cursor":null}'),
        AwarenessEntry(22, 7, "null"),
        AwarenessEntry(2**53 - 1, 2**32, '{"ü":"\\u00fc 👋"}'),
    ]
    return (encode_awareness_update(entries[:1]), encode_awareness_update(entries))


def update_frame(update: bytes) -> bytes:
    return encode_message(Update(update))


@cache
def frames() -> tuple[bytes, ...]:
    """Real y-protocols frames: one of each message type, every update as sync 2 and update."""
    doc: Doc = Doc(client_id=99)
    doc.get("title", type=Text).insert(0, "state")
    out = {
        encode_message(SyncStep1(doc.get_state())),
        encode_message(SyncStep1(b"\x00")),
        encode_message(QueryAwareness()),
        encode_message(Auth("permission denied")),
        encode_message(WriteAck(b"\x01\x02\x03\x04")),
    }
    for update in updates():
        out.add(encode_message(SyncStep2(update)))
        out.add(update_frame(update))
    for payload in awareness_payloads():
        out.add(encode_message(Awareness(payload)))
    return tuple(sorted(out, key=lambda f: (len(f), f)))


# -- mutations -------------------------------------------------------------------------------


def mutate(data: bytes, ops: Sequence[Op], corpus: Sequence[bytes]) -> bytes:
    """`data` with each op applied in turn; ints are reduced into range, so never raises."""
    buf = bytearray(data)
    for op in ops:
        kind, a, b = op[0], op[1], op[2]
        n = len(buf)
        if kind == "flip" and n:
            buf[a % n] ^= 1 << (b % 8)
        elif kind == "set" and n:
            buf[a % n] = INTERESTING_BYTES[b % len(INTERESTING_BYTES)] if b < 0 else b % 256
        elif kind == "insert":
            chunk = bytes(op[3]) if len(op) > 3 else bytes([b % 256])
            at = a % (n + 1)
            buf[at:at] = chunk
        elif kind == "delete" and n:
            at = a % n
            del buf[at : at + 1 + b % 16]
        elif kind == "truncate":
            del buf[a % (n + 1) :]
        elif kind == "duplicate" and n:
            at = a % n
            piece = buf[at : at + 1 + b % 64]
            buf[at:at] = piece
        elif kind == "splice" and corpus:
            other = corpus[b % len(corpus)]
            cut = a % (n + 1)
            buf = buf[:cut] + other[(op[3] if len(op) > 3 else 0) % (len(other) + 1) :]
        elif kind == "blowup":
            # a varUint the decoders must refuse or bound: over-long, over 2**53, or a huge
            # length/count that the rest of the input cannot back
            blow = (
                b"\xff" * (1 + b % 10) + b"\x01",
                encode_var_uint(2**53 - 1),
                encode_var_uint(2**32 - 1),
                encode_var_uint(2**31),
                b"\x80" * 9,
            )[b % 5]
            at = a % (n + 1)
            buf[at : at + 1] = blow
    return bytes(buf)


def random_ops(rng: random.Random, *, max_ops: int = 4) -> list[Op]:
    """Mutations drawn from `rng` (the long run's engine): mostly one, at most `max_ops`."""
    ops: list[Op] = []
    for _ in range(1 + min(int(rng.expovariate(1.2)), max_ops - 1)):
        kind = rng.choice(OP_KINDS)
        a, b = rng.getrandbits(16), rng.getrandbits(16)
        if kind == "set" and rng.random() < 0.5:
            b = -1 - rng.randrange(len(INTERESTING_BYTES))
        if kind == "insert" and rng.random() < 0.3:
            ops.append((kind, a, b, rng.randbytes(1 + rng.randrange(8))))
        elif kind == "splice":
            ops.append((kind, a, b, rng.getrandbits(16)))
        else:
            ops.append((kind, a, b))
    return ops


# -- what the fuzzers call -------------------------------------------------------------------


def _field_index(data: bytes) -> None:
    index = FieldIndex()
    index.ingest(data)
    index.load(data)


TARGETS: dict[str, Callable[[bytes], object]] = {
    "decode_message": decode_message,
    "decode_awareness_update": decode_awareness_update,
    "decode_update": decode_update,
    "first_client_id": first_client_id,
    "check_nesting": check_nesting,
    "FieldIndex": _field_index,
    "count_update": count_update,
}
"""Each pure decoder the server feeds a client's bytes to; bad input may raise only
`crdt.errors.ProtocolError` (README, "Connecting")."""
