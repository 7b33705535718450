"""Builds the browser editor into the wheel, so that `pip install draftsync` serves it.

pyproject.toml holds the project's metadata; this file only adds one step to setuptools'
`build_py`: run the esbuild bundle (web/build.mjs, after `npm ci` when web/node_modules is not
a finished install) straight into the built package as `server/http/static/`, which
server/http/pages.py serves before a checkout's web/dist/. Editable installs (`pip install -e`,
what `make` does) skip it: a checkout serves web/dist/, which `make web` builds. Needs Node.js 20
and npm.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

WEB = Path(__file__).resolve().parent / "web"
STATIC = ("server", "http", "static")


class _BuildPyWithEditor(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        self._build_editor(Path(self.build_lib, *STATIC))

    def _build_editor(self, out: Path) -> None:
        node, npm = shutil.which("node"), shutil.which("npm")
        if node is None or npm is None:
            raise SystemExit("draftsync: building the wheel bundles the editor: install Node.js 20")
        # npm writes node_modules/.package-lock.json once an install finished: an empty or
        # half-made folder (an interrupted install, a stray `mkdir`) is installed afresh.
        if not (WEB / "node_modules" / ".package-lock.json").is_file():
            self._run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"])
        self._run([node, "build.mjs", str(out.resolve())])
        if not (out / "editor.html").is_file():
            raise SystemExit(f"draftsync: web/build.mjs left no editor.html in {out}")

    @staticmethod
    def _run(command: list[str]) -> None:
        subprocess.run(command, cwd=WEB, check=True)


setup(cmdclass={"build_py": _BuildPyWithEditor})
