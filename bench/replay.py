"""Turning a trace into Yjs updates, one update per user transaction, with pycrdt producer docs.

This runs before any clock starts: the merge bench times only *applying* these updates, which is
what a server does with what editors send.

pycrdt's `Text` indexes UTF-8 bytes, the traces count code points: for a trace with non-ASCII
text, each position and deleted span is converted against the producer's text as it is then.

Concurrent traces follow the README's recipe with one producer doc per agent: before an agent's
txn, its doc is brought to exactly the txn's parents' version by applying the missing updates of
the other agents. Each agent's txns are totally ordered, so a version is a vector of per-agent
txn counts, and "missing" is a slice of each agent's list of updates. Txn order is a topological
order, so applying all updates in txn order to a fresh doc never leaves one pending.

Agent `i` writes with Yjs client id `i + 1`. This matters: friendsforever has concurrent inserts
that share a Yjs origin (not the same position in the trace's own terms), and YATA breaks such
ties by client id; with random ids it reaches `endContent` only when agent 0's id is the lower
(measured: ascending ids pass, descending fail at character 3798). A trace's last txn may be an
empty merge: it yields no update.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pycrdt import Doc, Text, TransactionEvent

from bench.runtime import progress
from bench.traces import Patch, Trace, Txn

__all__ = ["TEXT", "Replay", "ReplayMismatch", "produce_updates", "text_of"]

# The root Y.Text every replay writes to: a text field of the default schema, so that the room's
# journal observes it as it would a real draft's.
TEXT = "description"


class ReplayMismatch(AssertionError):
    """A replay ended on another text than the trace's: the benchmark figures would be void."""


@dataclass(frozen=True, slots=True)
class Replay:
    trace: Trace
    updates: list[bytes]  # one per (non-empty) txn, in txn order
    agents: list[int]  # who sent each update: one connection per agent in the room bench

    def check(self, text: str, where: str) -> None:
        if text != self.trace.end_content:
            at = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(text, self.trace.end_content, strict=False))
                    if a != b
                ),
                min(len(text), len(self.trace.end_content)),
            )
            raise ReplayMismatch(
                f"{self.trace.name}: {where} ended on a different text "
                f"(len {len(text)} vs {len(self.trace.end_content)}, first difference at {at})"
            )


def text_of(doc: Doc) -> str:
    return str(doc.get(TEXT, type=Text))


class _Producer:
    """One editor: a doc whose local transactions each yield exactly one update."""

    def __init__(self, *, ascii_only: bool, client_id: int) -> None:
        self.doc: Doc = Doc(client_id=client_id)
        self.text = self.doc.get(TEXT, type=Text)
        self._ascii = ascii_only
        self._captured: bytes | None = None
        # The text as a `str`, kept through local patches (str(text) per patch is ~100x dearer);
        # None after a remote update: re-read once when next needed.
        self._mirror: str | None = ""
        self.doc.observe(self._capture)

    def _capture(self, event: TransactionEvent) -> None:
        self._captured = event.update

    def receive(self, update: bytes) -> None:
        self.doc.apply_update(update)
        self._mirror = None

    def edit(self, patches: Iterable[Patch]) -> bytes | None:
        """Apply one txn locally; its update (None for an empty txn: a bare merge)."""
        self._captured = None
        with self.doc.transaction():
            for pos, delete_count, insert_text in patches:
                start, length = self._to_bytes(pos, delete_count, insert_text)
                if length:
                    del self.text[start : start + length]
                if insert_text:
                    self.text.insert(start, insert_text)
        return self._captured

    def _to_bytes(self, pos: int, count: int, insert_text: str) -> tuple[int, int]:
        """Code points to UTF-8 bytes for this patch, and the mirror moved past it."""
        if self._ascii:
            return pos, count
        content = self._mirror if self._mirror is not None else str(self.text)
        head, span = content[:pos], content[pos : pos + count]
        self._mirror = head + insert_text + content[pos + count :]
        return len(head.encode()), len(span.encode())


def produce_updates(trace: Trace, *, show: bool = True) -> Replay:
    """The trace as Yjs updates; the producers' final text is checked against the trace."""
    bar = progress(trace.txns, desc=f"encode {trace.name}", unit="txn", enabled=show)
    if trace.kind == "sequential":
        producer = _Producer(ascii_only=trace.is_ascii, client_id=1)
        updates = [u for u in (producer.edit(txn.patches) for txn in bar) if u is not None]
        replay = Replay(trace, updates, [0] * len(updates))
        replay.check(str(producer.text), "the producer doc")
        return replay
    return _produce_concurrent(trace, bar)


def _produce_concurrent(trace: Trace, txns: Iterable[Txn]) -> Replay:
    n = trace.num_agents
    ascii_only = trace.is_ascii
    agents = [_Producer(ascii_only=ascii_only, client_id=a + 1) for a in range(n)]
    have = [[0] * n for _ in range(n)]  # have[a][b]: txns of agent b applied to agent a's doc
    by_agent: list[list[bytes | None]] = [[] for _ in range(n)]
    versions: list[list[int]] = []  # per txn: per-agent txn counts including the txn itself
    updates: list[bytes] = []
    senders: list[int] = []
    for txn in txns:
        target = [0] * n
        for parent in txn.parents:
            target = [max(x, y) for x, y in zip(target, versions[parent], strict=True)]
        a = txn.agent
        producer = agents[a]
        for b in range(n):
            if have[a][b] > target[b]:
                raise ReplayMismatch(f"{trace.name}: agent {a} is ahead of its txn's parents")
            for update in by_agent[b][have[a][b] : target[b]]:
                if update is not None:
                    producer.receive(update)
            have[a][b] = target[b]
        if target[a] != len(by_agent[a]):
            raise ReplayMismatch(f"{trace.name}: agent {a}'s txns are not totally ordered")
        update = producer.edit(txn.patches)
        by_agent[a].append(update)
        have[a][a] += 1
        target[a] += 1
        versions.append(target)
        if update is not None:
            updates.append(update)
            senders.append(a)
    merged = Doc()
    for update in updates:
        merged.apply_update(update)
    replay = Replay(trace, updates, senders)
    replay.check(text_of(merged), "the merged producer docs")
    return replay
