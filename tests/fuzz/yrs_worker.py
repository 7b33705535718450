"""A child process that applies Yjs updates with pycrdt, so that a crash of yrs is a finding.

yrs panics (pyo3's PanicException, a BaseException) on some crafted updates and can even
take the process down (a segfault on deep nesting): the fuzz tests never apply a mutated
update in their own process. Framing, both ways: 4-byte big-endian length, then the bytes.
Answers: ``A`` + the doc's state after the apply (accepted), ``R`` + message (ValueError:
yrs refused it), ``P`` + message (any other exception: a panic, in the apply or in encoding
the doc afterwards).
"""

from __future__ import annotations

import struct
import sys

from pycrdt import Doc


def _answer(status: bytes, body: bytes) -> None:
    sys.stdout.buffer.write(struct.pack(">I", len(body) + 1) + status + body)
    sys.stdout.buffer.flush()


def main() -> None:
    stdin = sys.stdin.buffer
    while header := stdin.read(4):
        (length,) = struct.unpack(">I", header)
        update = stdin.read(length)
        doc: Doc = Doc()
        step = "apply_update"
        try:
            doc.apply_update(update)
            step = "get_update"  # the room encodes its doc for every joiner's sync
            state = doc.get_update()
        except ValueError as error:
            _answer(b"R", f"{step}: {error}".encode()[:500])
        except BaseException as error:  # pyo3's PanicException derives from BaseException
            _answer(b"P", f"{step}: {type(error).__name__}: {error}".encode()[:500])
        else:
            _answer(b"A", state)


if __name__ == "__main__":
    main()
