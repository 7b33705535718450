"""The argument types and the parser that `draftsync` and `draftsync bench` share.

Each type turns a bad value into one clear line (`must be a positive integer, got '0'`), never a
traceback: argparse prints what an `ArgumentTypeError` says and exits with status 2.
"""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

__all__ = [
    "OneLineParser",
    "nonnegative_seconds",
    "port",
    "positive_float",
    "positive_int",
    "positive_seconds",
    "user_name",
]


class OneLineParser(argparse.ArgumentParser):
    """A bad argument is one line on stderr and exit status 2, for every command and
    sub-command (argparse's own error prints the whole usage first, which for `serve` is
    a screenful that hides the one line that matters)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """Counts: 0 and -3 cannot work."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, got {text}")
    return value


def nonnegative_seconds(text: str) -> float:
    """Durations where 0 means "off"."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text: str, unit: str = "") -> float:
    """A finite number above 0 (NaN and infinity are refused too)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number{unit}, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number{unit}, got {text}")
    return value


def positive_seconds(text: str) -> float:
    return positive_float(text, " of seconds")


def user_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text
