"""The server's log: one record a line that nobody can forge, with no token in it, as text or JSON.

Clients choose many strings that end up in log lines (user names, draft ids, close reasons,
paths: uvicorn logs each WebSocket's path with its query string, and a y-websocket client's
token is there). `safe_record`, a filter in front of every handler, therefore

* redacts tokens wherever they travel (`token=...`, `Bearer ...`, `Authorization`, `Cookie` and
  `X-API-Key` values, any JWT quoted in an error) and webhook secrets (`whsec_...`) into
  `[redacted]`, in the message and in a traceback;
* drops the debug records that carry what clients typed: websockets' frame dumps
  (`< BINARY 00 02 ...`, logged through uvicorn's logger) and aiosqlite's, which repeat each
  query's parameters;
* escapes control characters (newline, NUL, ESC, ...) and the other characters that some
  readers take for a line break (C1 controls, U+2028, U+2029) as `\\xNN` / `\\uNNNN`, in the
  message and in an exception's traceback, so that a value can neither start a line of its own
  nor hide one.

A traceback keeps its line breaks (an operator reads it); the text format indents each of its
lines under the record with `  | `, so every line that starts at the margin is a record. The
JSON format (`--log-format json`, python-json-logger) writes one object a line: `level`,
`logger`, `message`, `time` (ISO 8601, UTC), any `extra=` fields, and `exc_info` with the
traceback. uvicorn's own loggers write through the same handler (it is given no logging config
of its own), so its lines follow the chosen format too.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from pythonjsonlogger.json import JsonFormatter

__all__ = ["LOG_FORMATS", "TEXT_FORMAT", "configure", "escape", "safe_record"]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# What a log line must never show: a token wherever it travels (a query string, a header, a JWT
# quoted in an error), a webhook secret; each is replaced by [redacted].
_SECRETS = re.compile(
    r"(?P<keep>token=|bearer\s+|(?:authorization|cookie|x-api-key)[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:bearer|basic|token)\s+)?)"
    r"[^&\s\"',;]+"
    r"|eyJ[\w-]{2,}\.[\w-]{2,}\.[\w-]*"  # a JWT, wherever it is quoted
    r"|whsec_[A-Za-z0-9+/=]+",
    re.IGNORECASE,
)
_FRAME_DUMP = ("< ", "> ")
_WEBSOCKETS_DIR = f"{os.sep}websockets{os.sep}"
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_UNSAFE_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_CONTINUATION = "\n  | "
_TRACE = 5


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with control and line-breaking characters escaped and tokens redacted."""
    safe = (_UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE).sub(_escaped, text)
    return _SECRETS.sub(lambda m: f"{m.group('keep') or ''}[redacted]", safe)


def _carries_content(record: logging.LogRecord) -> bool:
    """A debug record that would show what a client typed (module docstring)."""
    if record.levelno > logging.DEBUG:
        return False
    if record.name == "aiosqlite":
        return True
    return (
        _WEBSOCKETS_DIR in record.pathname
        and isinstance(record.msg, str)
        and record.msg.startswith(_FRAME_DUMP)
    )


def safe_record(record: logging.LogRecord) -> bool:
    """A logging filter for every handler (module docstring). It rewrites the record in place,
    once: the message is rendered and escaped, a traceback formatted and escaped into
    `exc_text` (and `exc_info` dropped, so that no formatter renders it again unescaped)."""
    if _carries_content(record):
        return False
    message = record.getMessage()
    safe = escape(message)
    if safe != message:
        record.msg = safe
        record.args = None
    if record.exc_info:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
    if record.exc_text:
        record.exc_text = escape(record.exc_text, keep_newlines=True)
    if record.stack_info:
        record.stack_info = escape(record.stack_info, keep_newlines=True)
    return True


class _TextFormatter(logging.Formatter):
    """The text format; the lines of a traceback are indented under their record."""

    def format(self, record: logging.LogRecord) -> str:
        # The message holds no line break (`safe_record`): every one here is a traceback's.
        return super().format(record).replace("\n", _CONTINUATION)


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )
    return _TextFormatter(TEXT_FORMAT)


def configure(level: str, log_format: str = "text") -> logging.Handler:
    """One handler on stderr for the whole process (the root logger), `safe_record` in front."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(log_format))
    handler.addFilter(safe_record)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # "trace" is uvicorn's level below debug (5), registered when uvicorn.config is imported.
    root.setLevel(_TRACE if level.lower() == "trace" else level.upper())
    return handler
