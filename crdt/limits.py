"""Bounded work per update: count what a Yjs update v1 asks of yrs, before the doc applies it.

yrs integrates an update in memory and time linear in its size, with one exception measured
on pycrdt 0.14.13 (issue 21, finding 2): a *chain* of items (each one's origin is the last
clock of the one before it, same client and content kind) is squashed into one item when the
transaction commits, and each squash copies the whole rest of the chain. A chain of N items
holding C bytes of content costs about N * C / 2 bytes (RSS, measured): 40,000 one-character
text items take 0.9 GB, 10,000 one-value array items 2.3 GB, 3,000 one-character items then one
of 300 KB 0.87 GB. Real clients rarely send chains (Yjs and yrs squash them in their own store
before encoding a sync), but a client that merges queued offline updates can: N keystrokes.

`RunScan` walks struct headers without decoding payloads (strings are skipped by length; only
a non-ASCII string is decoded, to count its clocks in UTF-16 units as Yjs does), counting:

    structs         every struct, GC and Skip included
    keys            items that name a map key (parentSub): each is a new key of some map
    field writes    new keys of the `fields` root, and items whose origin or right origin is
                    one (overwrites in the same run): the room reviews each in Python, ~50 us
                    a write (issue 21, finding 5: 700,000 keys took 35.6 s on the event loop);
                    an overwrite of a key already in the doc is bounded only by `structs`
    elements        values of Any/JSON contents, nested ones included (yrs builds each: one
                    object of 1,000,000 keys took 1.0 s and 129 MB, a flat array 65 ms)
    delete ranges   (clock, length) pairs of the delete set: each one that splits an item of
                    the doc costs yrs time linear in the items already split (measured on a
                    text of long items: 50,000 ranges 0.17 s, 100,000 0.67 s, 1,000,000 67 s
                    and 424 MB); inserts that split items behave alike (100,000: 0.6 s)
    clients         distinct clients the run names (struct groups and delete-set entries):
                    yrs integrates an update's clients in its own order, and one whose items
                    depend on another client's, client after client, costs it time growing with
                    the square of the clients and a native stack frame each (measured: 8,000
                    clients 35 ms, 60,000 14 s on the event loop; 87,000 empty struct groups or
                    99,000 such clients overflow the main thread's 8 MB stack: a segfault that
                    ends the server for every draft). An empty struct group counts as a struct
                    and a delete-set entry without ranges as a range (1,000,000 of them: 142 ms)
    merge bytes     the copying a chain costs: per chain, (items - 1) * its content bytes,
                    an Any/JSON value counting `ELEMENT_BYTES`; chains may span the updates
                    of one run, which the room applies in one transaction

and raises `UpdateTooLarge` (a ProtocolError: close 4400) as soon as one crosses its limit, or
`UndecodableUpdate` for a truncated or malformed update. Linear in the update's bytes, pure.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass

from crdt.errors import MalformedMessage, UndecodableUpdate, UpdateTooLarge
from crdt.lib0 import Reader
from crdt.updates import Id

__all__ = [
    "DEFAULT_LIMITS",
    "ELEMENT_BYTES",
    "RunScan",
    "UpdateCounts",
    "UpdateLimits",
    "check_update_limits",
    "count_update",
]

ELEMENT_BYTES = 48
"""What copying one Any/JSON value costs yrs when it squashes a chain (measured: 10,000
chained one-value array items peak at 2.3 GB, ~46 bytes per value copied)."""

_STRING, _JSON, _ANY = 4, 2, 8
_FIELDS = b"fields"  # the semantic fields' root (server/semantics.py): reviewed in Python
# How an update v1 names that root: as a varString, its length (6) then its bytes. Text that
# merely contains the word (a paragraph about form fields) is then no reason to walk a run.
_FIELDS_NAMED = bytes([len(_FIELDS)]) + _FIELDS
_SQUASHED = (_STRING, _JSON, _ANY)  # contents yrs squashes by copying (Deleted adds lengths)


@dataclass(frozen=True, slots=True)
class UpdateLimits:
    """The most one run of updates (one transaction) may ask of the doc; flags in `serve`."""

    structs: int = 100_000
    keys: int = 20_000
    field_writes: int = 128
    elements: int = 200_000
    delete_ranges: int = 50_000
    merge_bytes: int = 64 * 1024 * 1024
    clients: int = 4_096

    def needs_scan(self, updates: Sequence[bytes], *, has_fields: bool = False) -> bool:
        """False when a run of `updates` cannot cross any limit, so that a flood of keystrokes
        (runs of up to 128 small frames) is never walked: the room applies one in ~3 us.

        A run of B bytes holds at most B structs, keys, values, delete ranges or clients (each
        takes at least a byte). Merge bytes: a chained item takes >= 4 bytes (info, origin
        client and clock, a length or count) plus >= 1 per value or byte of content, so n
        chained items weigh at most 49 * (B - 4n) (an Any/JSON value weighs ELEMENT_BYTES +
        its bytes) and cost at most n * 49 * (B - 4n) <= 49 B^2 / 16 < 4 B^2. A write to
        `fields` takes >= 4 bytes, and there is none unless the run names the root `fields` (a
        new key does) or the doc already has `fields` keys (`has_fields`: an overwrite names
        only its origin). The run names the root only as a varString (length byte 6, then
        `fields`), so that is what is searched for: typed text that contains the word does not
        make a run walked."""
        size = sum(map(len, updates))
        if size > min(self.structs, self.keys, self.elements, self.delete_ranges, self.clients):
            return True
        if 4 * size * size > self.merge_bytes:
            return True
        # joined: one C-speed search (a match across two updates only errs on the safe side)
        return size > 4 * self.field_writes and (has_fields or _FIELDS_NAMED in b"".join(updates))


DEFAULT_LIMITS = UpdateLimits()

_FLAGS = {
    "structs": "--max-update-structs",
    "keys": "--max-update-keys",
    "field_writes": "--max-update-field-writes",
    "elements": "--max-insert-elements",
    "delete_ranges": "--max-update-deletes",
    "merge_bytes": "--max-update-merge-bytes",
    "clients": "--max-update-clients",
}

_NAMES = {
    "structs": "structs",
    "keys": "map keys",
    "field_writes": "writes to fields",
    "elements": "values",
    "delete_ranges": "delete ranges",
    "merge_bytes": "bytes of chained items",
    "clients": "clients",
}


@dataclass(frozen=True, slots=True)
class UpdateCounts:
    structs: int = 0
    keys: int = 0
    field_writes: int = 0
    elements: int = 0
    delete_ranges: int = 0
    merge_bytes: int = 0
    clients: int = 0
    string_bytes: int = 0  # String/Embed/Format/JSON/Binary payload bytes, for the record


class RunScan:
    """Counts over the updates of one run, added one by one (`add`), against `limits`."""

    def __init__(
        self, limits: UpdateLimits = DEFAULT_LIMITS, known_fields: Container[Id] = frozenset()
    ) -> None:
        self.limits = limits
        # Ids of the doc's items in `fields` (the room's FieldIndex): an item next to one
        # overwrites a key, and its review costs as much as a new key's.
        self._known_fields = known_fields
        self.structs = 0
        self.keys = 0
        self.elements = 0
        self.delete_ranges = 0
        self.merge_bytes = 0
        self.string_bytes = 0
        # Distinct clients the run names, structs and delete set alike.
        self._clients: set[int] = set()
        # Per client: (content ref, next clock) of the last item, and its chain's items, bytes.
        self._tails: dict[int, tuple[int, int, int, int]] = {}
        # Ids of the run's writes to the `fields` map: a new key, or an item next to one.
        self._field_ids: set[tuple[int, int]] = set()
        # Per update added: where each run of its clocks starts (each struct group's first
        # clock, the clock after each Skip), as `DecodedUpdate.starts`: the gap check reads
        # them from here for a large update yrs held back (crdt/gaps.py), not on the loop.
        self.starts: list[list[Id]] = []
        self._starts: list[Id] = []

    @property
    def counts(self) -> UpdateCounts:
        return UpdateCounts(
            structs=self.structs,
            keys=self.keys,
            field_writes=len(self._field_ids),
            elements=self.elements,
            delete_ranges=self.delete_ranges,
            merge_bytes=self.merge_bytes,
            clients=len(self._clients),
            string_bytes=self.string_bytes,
        )

    def add(self, update: bytes) -> None:
        """Count `update`; raise UpdateTooLarge past a limit, UndecodableUpdate if malformed."""
        self._starts = []
        self.starts.append(self._starts)
        try:
            self._scan(Reader(update))
        except MalformedMessage as exc:
            raise UndecodableUpdate(f"undecodable Yjs update: {exc}") from exc
        self._close_chains()

    def _add_client(self, client: int) -> None:
        clients = self._clients
        clients.add(client)
        if len(clients) > self.limits.clients:
            self._over("clients", len(clients))

    def _over(self, what: str, count: int) -> None:
        limit = getattr(self.limits, what)
        raise UpdateTooLarge(f"update too large: {count} {_NAMES[what]} > {limit} ({_FLAGS[what]})")

    def _scan(self, reader: Reader) -> None:
        limits = self.limits
        field_ids = self._field_ids
        known = self._known_fields
        read = reader.read_var_uint  # bound once: this loop runs per struct
        starts = self._starts
        for _ in range(read()):
            count = read()
            client = read()
            clock = read()
            starts.append((client, clock))
            self._add_client(client)
            if count == 0:  # no struct, yet yrs keeps a (stack-hungry) block list for it
                self.structs += 1
                if self.structs > limits.structs:
                    self._over("structs", self.structs)
            # The chain open at the end of this client's last group, if any: (content ref,
            # next clock, items, merge weight).
            tail = self._tails.pop(client, None)
            for _ in range(count):
                self.structs += 1  # counted as read: a more telling limit may fire first
                if self.structs > limits.structs:
                    self._over("structs", self.structs)
                info = reader.read_uint8()
                ref = info & 0x1F
                if ref == 0 or ref == 10:  # GC or Skip: a run of clocks, no item
                    clock += read()
                    if ref == 10:  # the clocks skipped are not in this update
                        starts.append((client, clock))
                    self._end_chain(tail)
                    tail = None
                    continue
                chained = field_write = False
                if info & 0x80:  # origin: chained if it is the last clock before this item
                    origin = (read(), read())
                    chained = origin[1] + 1 == clock and origin[0] == client
                    field_write = origin in field_ids or origin in known  # overwrites a key
                if info & 0x40:
                    right = (read(), read())
                    field_write = field_write or right in field_ids or right in known
                if not info & 0xC0:
                    in_fields = False
                    if read() == 1:
                        in_fields = self._skip(reader) == len(_FIELDS) and (
                            reader.buf[reader.pos - len(_FIELDS) : reader.pos] == _FIELDS
                        )
                    else:
                        read()  # the parent item's id
                        read()
                    if info & 0x20:
                        self._skip(reader)  # the map key
                        self.keys += 1
                        if self.keys > limits.keys:
                            self._over("keys", self.keys)
                        field_write = in_fields
                if field_write:
                    field_ids.add((client, clock))
                    if len(field_ids) > limits.field_writes:
                        self._over("field_writes", len(field_ids))
                length, weight = self._content(reader, ref)
                if chained and tail is not None and tail[0] == ref and tail[1] == clock:
                    tail = (ref, clock + length, tail[2] + 1, tail[3] + weight)
                    cost = self.merge_bytes + (tail[2] - 1) * tail[3]
                    if cost > limits.merge_bytes:  # a long chain is refused as it grows
                        self._over("merge_bytes", cost)
                else:
                    self._end_chain(tail)
                    tail = (ref, clock + length, 1, weight) if ref in _SQUASHED else None
                clock += length
            if tail is not None:
                self._tails[client] = tail
        for _ in range(read()):
            self._add_client(read())
            ranges = read()
            self.delete_ranges += ranges or 1  # an entry without ranges still costs yrs one
            if self.delete_ranges > limits.delete_ranges:
                self._over("delete_ranges", self.delete_ranges)
            for _ in range(ranges):
                read()
                read()
        reader.expect_end()

    def _end_chain(self, tail: tuple[int, int, int, int] | None) -> None:
        if tail is not None and tail[2] > 1:
            self.merge_bytes += (tail[2] - 1) * tail[3]
            if self.merge_bytes > self.limits.merge_bytes:
                self._over("merge_bytes", self.merge_bytes)

    def _close_chains(self) -> None:
        """Check the chains still open at the end of an update; a later update of the run may
        extend them, so they are added to `merge_bytes` only when they end (`finish`)."""
        before = self.merge_bytes
        try:
            for tail in self._tails.values():
                self._end_chain(tail)
        finally:
            self.merge_bytes = before

    def finish(self) -> UpdateCounts:
        """End the run: add the chains still open, and return its counts."""
        tails, self._tails = self._tails, {}
        for tail in tails.values():
            self._end_chain(tail)
        return self.counts

    def _skip(self, reader: Reader) -> int:
        """Skip a varString/varUint8Array by its length; return the length."""
        length = reader.read_var_uint()
        end = reader.pos + length
        if end > len(reader.buf):
            raise MalformedMessage(f"length {length} at byte {reader.pos} runs past the end")
        reader.pos = end
        self.string_bytes += length
        return length

    def _content(self, reader: Reader, ref: int) -> tuple[int, int]:
        """Skip one item's content: (its length in clocks, its merge weight in bytes)."""
        if ref == _STRING:
            start = reader.pos
            size = self._skip(reader)
            text = reader.buf[reader.pos - size : reader.pos]
            if text.isascii():
                return size, size
            try:
                units = len(text.decode("utf-8").encode("utf-16-le")) // 2
            except UnicodeDecodeError as exc:
                raise MalformedMessage(f"invalid UTF-8 in string at byte {start}") from exc
            return units, size
        if ref == _ANY:
            values = reader.read_var_uint()
            self._add_elements(values)
            nested = self._skip_any(reader, values)
            return values, (values + nested) * ELEMENT_BYTES
        if ref == _JSON:
            values = reader.read_var_uint()
            self._add_elements(values)
            size = sum(self._skip(reader) for _ in range(values))
            return values, values * ELEMENT_BYTES + size
        if ref == 1:  # Deleted
            return reader.read_var_uint(), 0
        if ref == 3 or ref == 5:  # Binary, Embed
            self._skip(reader)
        elif ref == 6:  # Format: key, value
            self._skip(reader)
            self._skip(reader)
        elif ref == 7:  # Type: XmlElement and XmlHook carry a name
            if reader.read_var_uint() in (3, 5):
                self._skip(reader)
        elif ref == 9:  # Doc: guid, options
            self._skip(reader)
            self._add_elements(1)
            self._add_elements(self._skip_any(reader, 1))
        else:
            raise MalformedMessage(f"unknown content ref {ref}")
        return 1, 0

    def _add_elements(self, count: int) -> None:
        self.elements += count
        if self.elements > self.limits.elements:
            self._over("elements", self.elements)

    def _skip_any(self, reader: Reader, count: int) -> int:
        """Skip `count` lib0 Any values without recursion; return how many values they nest."""
        nested = 0
        levels = [[count, False]]  # per open level: values left, and whether keys come first
        while levels:
            level = levels[-1]
            if level[0] == 0:
                levels.pop()
                continue
            level[0] -= 1
            if level[1]:
                self._skip(reader)  # the object's key
            tag = reader.read_uint8()
            if tag == 119 or tag == 116:  # string, bytes
                self._skip(reader)
            elif tag == 125:  # varInt
                while reader.read_uint8() & 0x80:
                    pass
            elif tag == 123 or tag == 122:  # float64, bigint
                reader.read_bytes(8)
            elif tag == 124:  # float32
                reader.read_bytes(4)
            elif tag == 117 or tag == 118:  # array, object
                size = reader.read_var_uint()
                nested += size
                self._add_elements(size)
                levels.append([size, tag == 118])
            elif tag < 116 or tag > 127:
                raise MalformedMessage(f"unknown lib0 any tag {tag}")
        return nested


def count_update(update: bytes, limits: UpdateLimits = DEFAULT_LIMITS) -> UpdateCounts:
    """The counts of one update (raising past `limits`, or if malformed)."""
    scan = RunScan(limits)
    scan.add(update)
    return scan.finish()


def check_update_limits(
    updates: Sequence[bytes], limits: UpdateLimits, known_fields: Container[Id] = frozenset()
) -> list[list[Id]] | None:
    """Refuse a run of updates (applied in one transaction) that would cross `limits`;
    `known_fields`: the ids of the doc's `fields` items, so that overwrites count. Small runs
    are not walked: they cannot cross any (`UpdateLimits.needs_scan`). Returns what the walk
    read of where each update's runs of clocks start (`RunScan.starts`), None if not walked."""
    if not limits.needs_scan(updates, has_fields=bool(known_fields)):
        return None
    scan = RunScan(limits, known_fields)
    for update in updates:
        scan.add(update)
    scan.finish()
    return scan.starts
