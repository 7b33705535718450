"""Reading Yjs update v1 without a Doc: struct headers, map keys, values, the delete set.

Layout (yjs `src/utils/encoding.js`, `Item.write`; docs/wire-formats.md)::

    update      = varUint numGroups, group*, deleteSet
    group       = varUint numStructs, varUint client, varUint clock, struct*
    struct      = info:uint8, ...
      info & 0x1F: 0 GC (varUint len) | 10 Skip (varUint len) | else an Item with content ref:
                   1 Deleted  2 JSON  3 Binary  4 String  5 Embed  6 Format  7 Type  8 Any  9 Doc
      info & 0x80: origin (left id: varUint client, varUint clock)
      info & 0x40: right origin (same layout)
      neither:     parent = varUint 1 + varString root name | varUint 0 + id of the parent item;
                   then, if info & 0x20, parentSub (varString: the map key)
    deleteSet   = varUint numClients, (varUint client, varUint numRanges, (clock, len)*)*

Only the first write of a map key names its parent and key; later writes carry an origin and
inherit both from it, so callers that need keys keep an index of the ids they have seen
(`crdt.fields.FieldIndex`). Clocks count UTF-16 code units for strings, as Yjs does.

This is deliberately not on the per-update path: the room decodes only updates that touched
the `fields` map (a pycrdt observer tells which), see docs/conflict-detection.md. The commonest
of those, one key set by an editor that had seen its value, is read by `read_overwrite` (one
item, one scalar value, its origin deleted) in a fraction of what `decode_update` takes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from crdt.errors import MalformedMessage, UndecodableUpdate
from crdt.lib0 import MAX_VAR_UINT, Reader

__all__ = [
    "CONTENT_NAMES",
    "JSON_CONTENTS",
    "MAX_ANY_DEPTH",
    "NO_VALUE",
    "DecodedUpdate",
    "Id",
    "ItemHeader",
    "check_nesting",
    "decode_update",
    "first_client_id",
    "may_nest_too_deep",
    "read_any",
    "read_overwrite",
    "read_single_write",
]

Id = tuple[int, int]  # (client, clock)

MAX_ANY_DEPTH = 256
"""Deepest nesting of arrays/objects in an Any value we accept. yrs decodes Any recursively
without a limit: a crafted value nested ~30,000 deep crashes the process (SIGSEGV)."""

NO_VALUE: Any = object()
"""The value of an item whose content carries none we read (deleted, text, types, ...)."""

CONTENT_NAMES = {
    1: "deleted",
    2: "JSON",
    3: "binary",
    4: "a string",
    5: "an embed",
    6: "a format",
    7: "a shared type",
    8: "JSON",
    9: "a subdocument",
}
"""What each content ref holds, as an error message names it."""

JSON_CONTENTS = frozenset({1, 2, 4, 8})
"""Content refs whose values are JSON (or gone): what a `fields` map value may be. A String
item on a map key (crafted: editors write Any) reads as a string, which the rules judge."""


@dataclass(frozen=True, slots=True)
class ItemHeader:
    id: Id
    length: int  # clocks the item spans (merged deleted runs span several)
    origin: Id | None
    right_origin: Id | None
    parent_root: str | None  # the root type's name, when the item names its parent
    parent_sub: str | None  # the map key, when the item names its parent
    deleted: bool  # content is Deleted (the content itself is gone)
    value: Any  # the one value of an Any/JSON/String content of length 1, else NO_VALUE
    content: int = 8  # the content ref (CONTENT_NAMES): 7 is a shared type, 8 Any


# A frozen dataclass's `__init__` sets each field through `object.__setattr__`: ~1.7 us for
# ItemHeader's nine, a tenth of a `fields` write's sequential review. `_item_header` builds
# the same object (equal, same hash) by the slots' own setters in ~0.5 us, for the readers of
# one write (tests/crdt/test_one_write_readers.py checks it against the constructor).
# `cast`: a type checker (mypy, mypyc) reads a slot on the class as the instance's value.
_SET_ID = cast(Any, ItemHeader).id.__set__
_SET_LENGTH = cast(Any, ItemHeader).length.__set__
_SET_ORIGIN = cast(Any, ItemHeader).origin.__set__
_SET_RIGHT_ORIGIN = cast(Any, ItemHeader).right_origin.__set__
_SET_PARENT_ROOT = cast(Any, ItemHeader).parent_root.__set__
_SET_PARENT_SUB = cast(Any, ItemHeader).parent_sub.__set__
_SET_DELETED = cast(Any, ItemHeader).deleted.__set__
_SET_VALUE = cast(Any, ItemHeader).value.__set__
_SET_CONTENT = cast(Any, ItemHeader).content.__set__
# `object.__new__` itself in the pure build; a compiled build's (mypyc) classes make their own.
_new_item = ItemHeader.__new__


def _item_header(
    id: Id, length: int, origin: Id | None, deleted: bool, value: Any, content: int
) -> ItemHeader:
    """`ItemHeader(id, length, origin, None, None, None, deleted, value, content)`: an item
    with a left origin only (no right origin, so no parent named)."""
    item = _new_item(ItemHeader)
    _SET_ID(item, id)
    _SET_LENGTH(item, length)
    _SET_ORIGIN(item, origin)
    _SET_RIGHT_ORIGIN(item, None)
    _SET_PARENT_ROOT(item, None)
    _SET_PARENT_SUB(item, None)
    _SET_DELETED(item, deleted)
    _SET_VALUE(item, value)
    _SET_CONTENT(item, content)
    return item


@dataclass(frozen=True, slots=True)
class DecodedUpdate:
    items: list[ItemHeader]
    delete_set: dict[int, list[tuple[int, int]]]  # client -> [(clock, length)]
    # Where each contiguous run of the update's clocks begins: each struct group's first clock
    # and the clock after each Skip. One past its client's next clock in a doc is a gap
    # (crdt/gaps.py).
    starts: list[Id] = field(default_factory=list)


def first_client_id(update: bytes) -> int | None:
    """The Yjs client id of the first struct group, None for a delete-only update.

    Used to record which client wrote an update; reads three varUints, not the whole update.
    Once per accepted run, so the commonest shape is read inline: one-byte group and struct
    counts (every update a client's transaction makes) and a client id of at most five bytes
    (Yjs ids are below 2**32), ~0.25 us against ~0.75 through a `Reader`. Anything else (a
    long count, a truncated or over-long id) goes through the `Reader`, with its errors.
    """
    if len(update) > 2 and update[0] < 0x80 and update[1] < 0x80:
        if update[0] == 0:
            return None
        client = 0
        shift = 0
        for byte in update[2:7]:
            client |= (byte & 0x7F) << shift
            if byte < 0x80:
                return client
            shift += 7
    reader = Reader(update)
    if reader.read_var_uint() == 0:
        return None
    reader.read_var_uint()  # numStructs
    return reader.read_var_uint()


def may_nest_too_deep(update: bytes) -> bool:
    """A cheap, conservative test (two C-speed byte counts, none for small updates): False
    means no Any value in the update can nest deeper than MAX_ANY_DEPTH, since every level
    takes one array (117, "u") or object (118, "v") tag byte."""
    return len(update) >= MAX_ANY_DEPTH and (
        update.count(b"u") + update.count(b"v") >= MAX_ANY_DEPTH
    )


def check_nesting(update: bytes) -> None:
    """Raise UndecodableUpdate if an Any value nests deeper than MAX_ANY_DEPTH."""
    decode_update(update)


def decode_update(update: bytes) -> DecodedUpdate:
    try:
        return _decode(Reader(update))
    except MalformedMessage as exc:
        raise UndecodableUpdate(f"undecodable Yjs update: {exc}") from exc


def read_overwrite(update: bytes) -> ItemHeader | None:
    """The item of an update that overwrites one value: one struct, an item with a left origin
    only and Any content of one scalar value (a string, number, boolean or null), and a delete
    set that deletes its origin alone (one clock). That is what an editor sends when it sets a
    map key whose value it had seen (`fields`: the new item's origin is the old value, which it
    deletes). None for any other update, and for one this cannot read.

    Where it answers, it answers what `decode_update(update).items` would: the same item,
    read the same way (varUints as `Reader` reads them, strict UTF-8; the delete set is the
    origin's varUints again). It costs ~2-4 us where `decode_update` costs ~8-16: no `Reader`
    method per varUint, no `DecodedUpdate` (S5, issue 24: the decode was an eighth of a
    `fields` write's review)."""
    if update[:2] != b"\x01\x01":  # one struct group of one struct
        return None
    try:
        client, pos = _var_uint(update, 2)
        clock, pos = _var_uint(update, pos)
        info = update[pos]
        # A left origin, no right origin, Any content; with an origin the parent (and so
        # 0x20, "a key follows") is never read.
        if info & 0xDF != 0x88:
            return None
        origin_at = pos + 1
        origin_client, origin_mid = _var_uint(update, origin_at)
        origin_clock, origin_end = _var_uint(update, origin_mid)
        if update[origin_end] != 1:  # one value
            return None
        value, pos = _scalar(update, origin_end + 1)
    except (_Unread, IndexError):
        return None
    # The delete set: one client, the origin's; one range, the origin's clock, one clock.
    origin_alone = b"".join(
        (b"\x01", update[origin_at:origin_mid], b"\x01", update[origin_mid:origin_end], b"\x01")
    )
    if value is _UNREAD or update[pos:] != origin_alone:
        return None
    return _item_header((client, clock), 1, (origin_client, origin_clock), False, value, 8)


def read_single_write(update: bytes) -> DecodedUpdate | None:
    """`decode_update(update)` for an update of one item with a left origin only, holding one
    scalar value (Any content: a string, number, boolean or null) or nothing (Deleted content),
    followed by any delete set; None for any other update and for one this cannot read, which
    `decode_update` then reads (or refuses) as before.

    That is a map key's write that raced another (S5, issue 24: a third of its writes): the one
    Yjs ordered last deletes the other's item rather than its own origin, so `read_overwrite`
    leaves it; the one ordered first comes out of the doc as Deleted, and its value is in the
    client's bytes, which are an overwrite again. Where it answers, it answers what
    `decode_update` would (the same `Reader` limits on every varUint, strict UTF-8), in ~3 us
    where `decode_update` costs ~8-16."""
    if update[:2] != b"\x01\x01":  # one struct group of one struct
        return None
    try:
        client, pos = _var_uint(update, 2)
        clock, pos = _var_uint(update, pos)
        info = update[pos]
        kind = info & 0xDF  # a left origin, no right origin (so no parent, no key)
        if kind != 0x88 and kind != 0x81:  # Any or Deleted content
            return None
        origin_client, pos = _var_uint(update, pos + 1)
        origin_clock, pos = _var_uint(update, pos)
        if kind == 0x88:
            if update[pos] != 1:  # one value
                return None
            value, pos = _scalar(update, pos + 1)
            if value is _UNREAD:
                return None
            length = 1
        else:
            length, pos = _var_uint(update, pos)
            value = NO_VALUE
            if not length:  # an item of no clocks, which `decode_update` drops
                return None
        delete_set, pos = _delete_set(update, pos)
    except (_Unread, IndexError):
        return None
    if pos != len(update):
        return None
    item = _item_header(
        (client, clock), length, (origin_client, origin_clock), kind == 0x81, value, info & 0x1F
    )
    return DecodedUpdate([item], delete_set, [(client, clock)])


def _delete_set(data: bytes, pos: int) -> tuple[dict[int, list[tuple[int, int]]], int]:
    """A delete set at `pos`, as `_decode` reads it, and the position after it; each range
    reads two bytes at least, so a crafted count stops at the data's end (IndexError)."""
    clients, pos = _var_uint(data, pos)
    delete_set: dict[int, list[tuple[int, int]]] = {}
    for _ in range(clients):
        client, pos = _var_uint(data, pos)
        ranges = delete_set.setdefault(client, [])
        count, pos = _var_uint(data, pos)
        for _ in range(count):
            start, pos = _var_uint(data, pos)
            length, pos = _var_uint(data, pos)
            ranges.append((start, length))
    return delete_set, pos


class _Unread(Exception):
    """`read_overwrite` leaves this update to `decode_update`."""


_UNREAD: Any = object()
_SCALAR_CONSTANTS = {120: True, 121: False, 126: None, 127: None}  # lib0 `readAny` tags


def _var_uint(data: bytes, pos: int) -> tuple[int, int]:
    """A varUint at `pos` and the position after it, as `Reader.read_var_uint` reads it (at
    most 8 bytes, at most 2**53 - 1); `_Unread` (or IndexError past the end) where that fails.

    Unrolled, one byte a step: a Yjs client id (random, below 2**32) is 5 bytes, two of them
    in every `fields` write; the loop this replaces took ~0.45 us on those, this ~0.35
    (tests/crdt/test_one_write_readers.py checks it against `Reader`)."""
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    value = byte & 0x7F
    byte = data[pos + 1]
    if byte < 0x80:
        return value | byte << 7, pos + 2
    value |= (byte & 0x7F) << 7
    byte = data[pos + 2]
    if byte < 0x80:
        return value | byte << 14, pos + 3
    value |= (byte & 0x7F) << 14
    byte = data[pos + 3]
    if byte < 0x80:
        return value | byte << 21, pos + 4
    value |= (byte & 0x7F) << 21
    byte = data[pos + 4]
    if byte < 0x80:
        return value | byte << 28, pos + 5
    value |= (byte & 0x7F) << 28
    byte = data[pos + 5]
    if byte < 0x80:
        return value | byte << 35, pos + 6
    value |= (byte & 0x7F) << 35
    byte = data[pos + 6]
    if byte < 0x80:
        return value | byte << 42, pos + 7
    value |= (byte & 0x7F) << 42
    byte = data[pos + 7]
    if byte >= 0x80:  # an 8th byte that is not the last
        raise _Unread
    value |= byte << 49
    if value > MAX_VAR_UINT:
        raise _Unread
    return value, pos + 8


def _scalar(data: bytes, pos: int) -> tuple[Any, int]:
    """A lib0 Any value at `pos` if it is a string, number, boolean or null (`_UNREAD` for
    anything else: arrays, objects and binary are `read_any`'s), and the position after it."""
    tag = data[pos]
    if tag == 119:  # a string
        length, start = _var_uint(data, pos + 1)
        end = start + length
        if end > len(data):
            raise _Unread
        try:
            return data[start:end].decode("utf-8"), end
        except UnicodeDecodeError:
            raise _Unread from None
    if tag in _SCALAR_CONSTANTS:
        return _SCALAR_CONSTANTS[tag], pos + 1
    if tag in (122, 123, 124, 125):  # int64, float64, float32, varInt: as `read_any` reads them
        reader = Reader(data, pos)
        try:
            value = read_any(reader, 0)
        except MalformedMessage:
            raise _Unread from None
        return value, reader.pos
    return _UNREAD, pos


def _decode(reader: Reader) -> DecodedUpdate:
    items: list[ItemHeader] = []
    starts: list[Id] = []
    for _ in range(reader.read_var_uint()):
        count = reader.read_var_uint()
        client = reader.read_var_uint()
        clock = reader.read_var_uint()
        starts.append((client, clock))
        for _ in range(count):
            info = reader.read_uint8()
            ref = info & 0x1F
            if ref in (0, 10):  # GC or Skip: a run of clocks with nothing we can read
                clock += reader.read_var_uint()
                if ref == 10:  # the clocks skipped are not in this update
                    starts.append((client, clock))
                continue
            item = _read_item(reader, info, (client, clock))
            if item.length:  # yrs drops an item of no clocks ("", no values): so do we
                items.append(item)
            clock += item.length
    delete_set: dict[int, list[tuple[int, int]]] = {}
    for _ in range(reader.read_var_uint()):
        client = reader.read_var_uint()
        ranges = delete_set.setdefault(client, [])
        for _ in range(reader.read_var_uint()):
            ranges.append((reader.read_var_uint(), reader.read_var_uint()))
    return DecodedUpdate(items=items, delete_set=delete_set, starts=starts)


def _read_id(reader: Reader) -> Id:
    return (reader.read_var_uint(), reader.read_var_uint())


def _read_item(reader: Reader, info: int, item_id: Id) -> ItemHeader:
    origin = _read_id(reader) if info & 0x80 else None
    right_origin = _read_id(reader) if info & 0x40 else None
    parent_root = parent_sub = None
    if origin is None and right_origin is None:
        if reader.read_var_uint() == 1:
            parent_root = reader.read_var_string()
        else:
            _read_id(reader)  # a nested type's item: not a root we index
        if info & 0x20:
            parent_sub = reader.read_var_string()
    ref = info & 0x1F
    reader_fn = _CONTENT.get(ref)
    if reader_fn is None:
        raise MalformedMessage(f"unknown content ref {ref} in item {item_id}")
    length, value = reader_fn(reader)
    return ItemHeader(
        id=item_id,
        length=length,
        origin=origin,
        right_origin=right_origin,
        parent_root=parent_root,
        parent_sub=parent_sub,
        deleted=ref == 1,
        value=value,
        content=ref,
    )


# -- contents: each reader returns (length in clocks, the value or NO_VALUE) -------------------


def _deleted(reader: Reader) -> tuple[int, Any]:
    return reader.read_var_uint(), NO_VALUE


def _json(reader: Reader) -> tuple[int, Any]:
    values = []
    for _ in range(reader.read_var_uint()):
        text = reader.read_var_string()
        values.append(None if text == "undefined" else _parse_json(text))
    return len(values), values[0] if len(values) == 1 else NO_VALUE


def _binary(reader: Reader) -> tuple[int, Any]:
    return 1, reader.read_var_bytes()


def _string(reader: Reader) -> tuple[int, Any]:
    text = reader.read_var_string()
    return len(text.encode("utf-16-le")) // 2, text


def _embed(reader: Reader) -> tuple[int, Any]:
    return 1, _parse_json(reader.read_var_string())


def _format(reader: Reader) -> tuple[int, Any]:
    reader.read_var_string()
    reader.read_var_string()
    return 1, NO_VALUE


def _type(reader: Reader) -> tuple[int, Any]:
    if reader.read_var_uint() in (3, 5):  # XmlElement and XmlHook carry a name
        reader.read_var_string()
    return 1, NO_VALUE


def _any(reader: Reader) -> tuple[int, Any]:
    values = [read_any(reader, 0) for _ in range(reader.read_var_uint())]
    return len(values), values[0] if len(values) == 1 else NO_VALUE


def _doc(reader: Reader) -> tuple[int, Any]:
    reader.read_var_string()
    read_any(reader, 0)
    return 1, NO_VALUE


_CONTENT: dict[int, Callable[[Reader], tuple[int, Any]]] = {
    1: _deleted,
    2: _json,
    3: _binary,
    4: _string,
    5: _embed,
    6: _format,
    7: _type,
    8: _any,
    9: _doc,
}


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedMessage(f"invalid JSON content: {exc}") from exc


def read_any(reader: Reader, depth: int) -> Any:
    """lib0 `readAny`: a tagged value (tags 116-127), nested at most MAX_ANY_DEPTH deep."""
    if depth > MAX_ANY_DEPTH:
        raise MalformedMessage(f"value nested deeper than {MAX_ANY_DEPTH} levels")
    tag = reader.read_uint8()
    if tag == 119:
        return reader.read_var_string()
    if tag == 125:
        return reader.read_var_int()
    if tag == 123:
        return struct.unpack(">d", reader.read_bytes(8))[0]
    if tag == 124:
        return struct.unpack(">f", reader.read_bytes(4))[0]
    if tag == 122:
        return struct.unpack(">q", reader.read_bytes(8))[0]
    if tag == 121:
        return False
    if tag == 120:
        return True
    if tag in (126, 127):
        return None
    if tag == 118:
        return {
            reader.read_var_string(): read_any(reader, depth + 1)
            for _ in range(reader.read_var_uint())
        }
    if tag == 117:
        return [read_any(reader, depth + 1) for _ in range(reader.read_var_uint())]
    if tag == 116:
        return reader.read_var_bytes()
    raise MalformedMessage(f"unknown lib0 any tag {tag}")
