"""The checkout as a clone of it would hold it: what git tracks, or would track once committed
(untracked files that are not ignored), never build output, `node_modules` or what lies beside
the repository. Tests that must not depend on the checkout's surroundings copy it with this."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.server_process import REPO

__all__ = ["checkout_files", "copy_checkout"]


def checkout_files() -> list[str]:
    """The repository's files, relative to its root."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


def copy_checkout(target: Path) -> Path:
    """Copy the repository's files into `target` (made here); return it."""
    for name in checkout_files():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)
    return target
