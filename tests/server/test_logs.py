"""The log's formats (server/logs.py) on a traceback whose exception message a client chose:
the text format keeps a record's first line at the margin and indents the traceback under it,
the JSON format writes one object; neither lets a NUL, a CR or a token through. The running
server's log is tested in test_log_redaction.py."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from server import logs

FORGED = "2026-12-06 12:00:00,000 INFO draftsync.api FORGED"
CHOSEN = f"bad draft\n{FORGED}\x00\r ?token=eyJsecret"


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def log_failure(root: logging.Logger, log_format: str) -> str:
    handler = logs.configure("info", log_format)
    stream = io.StringIO()
    handler.setStream(stream)
    try:
        raise ValueError(CHOSEN)
    except ValueError:
        logging.getLogger("draftsync.test").exception("failed for user=%s", CHOSEN)
    return stream.getvalue()


def test_text_format_indents_a_traceback_under_its_record(root_logger: logging.Logger) -> None:
    lines = log_failure(root_logger, "text").splitlines()
    assert "failed for user=bad draft\\x0a2026-12-06" in lines[0]
    assert "\\x00\\x0d ?token=[redacted]" in lines[0]
    assert len(lines) > 2 and all(line.startswith("  | ") for line in lines[1:])
    assert any(line.startswith(f"  | {FORGED}") for line in lines)  # kept, but not a record
    output = "\n".join(lines)
    assert "\x00" not in output and "\r" not in output and "eyJsecret" not in output


def test_json_format_is_one_object_a_record(root_logger: logging.Logger) -> None:
    (line,) = log_failure(root_logger, "json").splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["logger"] == "draftsync.test"
    assert record["message"].startswith("failed for user=bad draft\\x0a2026-12-06")
    assert record["time"] and f"\n{FORGED}\\x00\\x0d" in record["exc_info"]
    assert "eyJsecret" not in line


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a\nb", "a\\x0ab"),
        ("a\x1b[31m", "a\\x1b[31m"),
        ("a\x85b", "a\\x85b"),
        ("a\u2028", "a\\u2028"),
    ],
)
def test_escape_covers_every_line_break_a_reader_may_honour(text: str, escaped: str) -> None:
    assert logs.escape(text) == escaped
