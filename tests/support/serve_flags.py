"""A `serve` flag's value that cannot work is refused while the arguments are parsed: one line
on stderr naming the flag, exit status 2, nothing started. Every flag family's tests ask it the
same way, so they share this one check."""

from __future__ import annotations

import pytest

from server.cli import main

__all__ = ["refused_at_start"]


def refused_at_start(capsys: pytest.CaptureFixture[str], option: str, value: str) -> str:
    """Run `draftsync serve OPTION VALUE`, check it is refused as above; the error line."""
    with pytest.raises(SystemExit) as exit_:
        main(["serve", option, value])  # refused while parsing: nothing starts
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert option in err, err
    return err
