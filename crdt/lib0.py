"""lib0 binary encoding: the primitives every y-protocols frame is built from.

::

    varUint         7 value bits per byte, least significant group first; the high bit (0x80)
                    says another byte follows.   0 -> 00   127 -> 7f   128 -> 80 01   300 -> ac 02
    varUint8Array   varUint length, then that many bytes
    varString       UTF-8 bytes as a varUint8Array (the length counts bytes, not characters)

Reading follows lib0 ``decoding.js`` (https://github.com/dmonad/lib0/blob/
b41c6168e7f00ff6fb63acec6be229463165c4f7/src/decoding.js#L245) with two differences: every read is
bounds-checked and fails with ``MalformedMessage`` (lib0 throws untyped errors or reads
``undefined``), and a varUint may be at most 8 bytes long and at most 2**53 - 1 (lib0's
``MAX_SAFE_INTEGER`` limit, without accepting padding bytes past it). Strings are decoded
strictly: invalid UTF-8 is malformed, where lib0's ``TextDecoder`` would substitute U+FFFD.
"""

from .errors import MalformedMessage

__all__ = [
    "MAX_VAR_UINT",
    "Reader",
    "encode_var_uint",
    "write_var_bytes",
    "write_var_string",
    "write_var_uint",
]

MAX_VAR_UINT = 2**53 - 1
"""Largest varUint lib0 can read (JavaScript's ``Number.MAX_SAFE_INTEGER``)."""

_MAX_VAR_UINT_BYTES = 8  # 8 groups of 7 bits = 56 bits, enough for 53


class Reader:
    """A cursor over one frame: ``pos`` is the index of the next unread byte."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def read_var_uint(self) -> int:
        buf = self.buf
        pos = self.pos
        # Fast path: message types, sync subtypes and short lengths fit in one byte.
        if pos < len(buf):
            byte = buf[pos]
            if byte < 0x80:
                self.pos = pos + 1
                return byte
        return self._read_long_var_uint()

    def _read_long_var_uint(self) -> int:
        buf = self.buf
        start = pos = self.pos
        end = min(len(buf), start + _MAX_VAR_UINT_BYTES)
        value = 0
        shift = 0
        while pos < end:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                if value > MAX_VAR_UINT:
                    raise MalformedMessage(f"varUint at byte {start} exceeds 2**53 - 1")
                self.pos = pos
                return value
            shift += 7
        if pos - start == _MAX_VAR_UINT_BYTES:
            raise MalformedMessage(
                f"varUint at byte {start} is longer than {_MAX_VAR_UINT_BYTES} bytes"
            )
        raise MalformedMessage(f"truncated varUint at byte {start} (frame is {len(buf)} bytes)")

    def read_var_bytes(self) -> bytes:
        start = self.pos
        length = self.read_var_uint()
        pos = self.pos
        end = pos + length
        if end > len(self.buf):
            raise MalformedMessage(
                f"length {length} at byte {start} runs past the end of the frame "
                f"(frame is {len(self.buf)} bytes)"
            )
        self.pos = end
        return self.buf[pos:end]

    def read_var_string(self) -> str:
        start = self.pos
        data = self.read_var_bytes()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessage(
                f"invalid UTF-8 in string at byte {start}: {exc.reason} "
                f"at string offset {exc.start}"
            ) from exc

    def read_bytes(self, length: int) -> bytes:
        pos = self.pos
        end = pos + length
        if end > len(self.buf):
            raise MalformedMessage(
                f"{length} bytes at {pos} run past the end (frame is {len(self.buf)} bytes)"
            )
        self.pos = end
        return self.buf[pos:end]

    def read_var_int(self) -> int:
        """lib0 varInt: the first byte holds a sign bit (0x40) and 6 value bits."""
        first = self.read_uint8()
        value = first & 0x3F
        shift = 6
        byte = first
        while byte & 0x80:
            if shift > 53:
                raise MalformedMessage(f"varInt at byte {self.pos} is too long")
            byte = self.read_uint8()
            value |= (byte & 0x7F) << shift
            shift += 7
        return -value if first & 0x40 else value

    def read_uint8(self) -> int:
        pos = self.pos
        if pos >= len(self.buf):
            raise MalformedMessage(f"expected a byte at {pos}, frame is {len(self.buf)} bytes")
        self.pos = pos + 1
        return self.buf[pos]

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.buf)

    def expect_end(self) -> None:
        """Fail if bytes are left where the message must end."""
        left = len(self.buf) - self.pos
        if left > 0:
            raise MalformedMessage(f"{left} unread bytes after the message ends at byte {self.pos}")


def write_var_uint(out: bytearray, value: int) -> None:
    if 0 <= value < 0x80:
        out.append(value)
        return
    if not 0 <= value <= MAX_VAR_UINT:
        raise ValueError(f"varUint out of range 0..2**53 - 1: {value}")
    while value >= 0x80:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)


def write_var_bytes(out: bytearray, data: bytes) -> None:
    write_var_uint(out, len(data))
    out += data


def write_var_string(out: bytearray, text: str) -> None:
    write_var_bytes(out, text.encode("utf-8"))


def encode_var_uint(value: int) -> bytes:
    out = bytearray()
    write_var_uint(out, value)
    return bytes(out)
