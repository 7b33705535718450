"""Which signed fan-out messages are new: a replayed one, however validly signed, acts no more.

Why: the signature (server/cluster/signing.py) says an instance of the service wrote a message,
not that it is writing it now. Anything that can listen on Redis can keep a message and
PUBLISH it again, byte for byte. Before, a receiver dropped a copy only while it remembered
its sender's last number, and forgot it when the sender had been silent for
INSTANCE_TIMEOUT_SECONDS (5 s): after that, a replayed "bob lost his role" closed bob's
connections though his role was given back. Heartbeats carried no number at all: one replayed
every few seconds kept a dead instance's cursors on screen. (A replayed cursor was already
refused: a departed client's last awareness clock is remembered, server/sync/presence.py,
and a replayed update's version is one the room has.)

Two checks, both needed, each ~0.1 us:

- the window: the tag covers the time the message was sent (the sender's clock); one sent more
  than REPLAY_WINDOW_SECONDS before (or after: a clock far off) the receiver's clock is
  dropped (`fresh`). Instances' clocks must agree within the window (NTP does, to milliseconds);
  the fan-out logs the messages it drops so, and their offset.
- the sender's numbers: within the window, a message is new only if its number is past every
  one heard from its sender (`Senders.first`): outbox messages are numbered in the order they
  leave (`n`, one task publishes them), heartbeats on their own (`b`: they do not wait in the
  outbox). A sender is forgotten only after FORGET_SECONDS of silence, by when every message
  it ever sent is outside the window.

Bounded: a sender is an instance that published a validly signed, fresh message in the last
FORGET_SECONDS (only holders of the service's secret can), a few per deployment.

Not covered: a message a receiver never heard (it subscribed after it was sent, or its
subscription was down), replayed to it within the window, is new to it. It is one the service
sent less than REPLAY_WINDOW_SECONDS ago.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FORGET_SECONDS", "REPLAY_WINDOW_SECONDS", "Senders", "fresh"]

REPLAY_WINDOW_SECONDS = 30.0
"""How far a message's send time may be from the receiver's clock. Publishing takes
milliseconds (a message is stamped when it leaves, not when it was queued): the window is for
the instances' clocks, which NTP keeps within milliseconds; 30 s rides out a clock that
drifted or was stepped."""

FORGET_SECONDS = 2 * REPLAY_WINDOW_SECONDS + 5.0
"""Silence after which a sender's numbers are forgotten. A message of it accepted now was sent
at most REPLAY_WINDOW_SECONDS before now (by the receiver's clock, give or take the window):
once twice the window has passed since its last one, a copy of any of them is outside the
window. Plus a margin."""


def fresh(sent: float, now: float) -> bool:
    """Whether a message sent at `sent` (the sender's `time.time()`) may be new at `now` (the
    receiver's). Written so that a NaN is not fresh."""
    return now - REPLAY_WINDOW_SECONDS <= sent <= now + REPLAY_WINDOW_SECONDS


@dataclass(slots=True)
class _Sender:
    number: int = 0  # the highest message number heard (`n`)
    beat: int = 0  # the highest heartbeat number heard (`b`)
    heard: float = 0.0  # when the last new one came (`time.monotonic()`)


class Senders:
    """The highest numbers heard from each instance that spoke lately."""

    __slots__ = ("_senders",)

    def __init__(self) -> None:
        self._senders: dict[str, _Sender] = {}

    def __len__(self) -> int:
        return len(self._senders)

    def first(self, instance: str, number: int, now: float, *, beat: bool = False) -> bool:
        """Whether message (or heartbeat, `beat`) `number` of `instance` is past every one
        heard from it; if so it is remembered as heard at `now` (`time.monotonic()`)."""
        sender = self._senders.get(instance)
        if sender is None:
            sender = self._senders[instance] = _Sender()
        if beat:
            if number <= sender.beat:
                return False
            sender.beat = number
        else:
            if number <= sender.number:
                return False
            sender.number = number
        sender.heard = now
        return True

    def forget_silent(self, now: float) -> None:
        """Forget the senders silent for FORGET_SECONDS at `now` (`time.monotonic()`)."""
        for instance in [i for i, s in self._senders.items() if now - s.heard >= FORGET_SECONDS]:
            del self._senders[instance]
