"""`pip install` of the wheel gives a server with its editor (README "Install from a wheel").

The wheel is built from a copy of the checkout's files (what git tracks, or would track), so the
build never writes into the checkout; it is installed into a fresh virtual environment outside
the checkout with its runtime dependencies only (from PyPI, through pip's cache), and its
`draftsync serve` must answer the editor's pages and bundle. The extras are not installed, so
the same venv shows the one-line errors that name them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.checkout import copy_checkout
from tests.support.readme import readme_example
from tests.support.server_process import REPO, free_port

STEP_TIMEOUT = 240  # seconds for one pip step; the whole module takes ~25 s with a warm cache


@dataclass(frozen=True)
class _Installed:
    venv: Path
    home: Path  # a folder outside the checkout, the cwd of every command

    @property
    def draftsync(self) -> str:
        return str(self.venv / "bin" / "draftsync")

    def env(self, **extra: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DRAFTSYNC"))}
        return {**keep, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.draftsync, *args],
            cwd=self.home,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )


def _pip(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        [*args, "--quiet", "--disable-pip-version-check"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
    )
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> _Installed:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    copy_checkout(source)
    node_modules = REPO / "web" / "node_modules"
    # `make test` installs it; else (or if it is not a finished install) setup.py runs `npm ci`
    if (node_modules / ".package-lock.json").is_file():
        (source / "web" / "node_modules").symlink_to(node_modules.resolve())
    wheels = root / "wheels"
    _pip(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), ".", cwd=source)
    (wheel,) = wheels.glob("draftsync-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=STEP_TIMEOUT)
    _pip(str(venv / "bin" / "python"), "-m", "pip", "install", str(wheel), cwd=root)
    home = root / "home"
    home.mkdir()
    return _Installed(venv, home)


@pytest.fixture(scope="module")
def served(installed: _Installed) -> Iterator[int]:
    port = free_port()
    log = installed.home / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [installed.draftsync, "serve", "--port", str(port), "--data", "data"],
            cwd=installed.home,
            env=installed.env(),
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: _Installed) -> None:
    where = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import server; print(server.__file__)"],
        cwd=installed.home,
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed.venv), where


def test_draftsync_serve_from_the_wheel_serves_the_editor(served: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{served}", timeout=10) as http:
        for page, script in (("/", "/static/drafts.js"), ("/d/wheel-draft", "/static/editor.js")):
            answer = http.get(page)
            assert answer.status_code == 200, (page, answer.text)
            assert answer.headers["content-type"].startswith("text/html")
            assert "not built" not in answer.text
            for asset in (script, "/static/style.css"):  # what the page loads
                assert f'"{asset}"' in answer.text, answer.text
                loaded = http.get(asset)
                assert loaded.status_code == 200, (asset, loaded.text[:200])
                assert len(loaded.content) > 100


def test_the_runtime_dependencies_leave_out_the_extras(installed: _Installed) -> None:
    python = str(installed.venv / "bin" / "python")
    for module in ("matplotlib", "tqdm", "asyncpg", "redis"):
        found = subprocess.run(
            [python, "-c", f"import importlib.util as u; print(u.find_spec({module!r}))"],
            cwd=installed.home,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        assert found == "None", f"{module} was installed without its extra: {found}"


@pytest.mark.parametrize(
    ("args", "env", "extra"),
    [
        (("serve", "--store", "postgresql://x"), {}, "draftsync[cluster]"),
        (("serve",), {"DRAFTSYNC_STORE": "postgresql://x"}, "draftsync[cluster]"),
        (("bench", "merge", "--quick"), {}, "draftsync[bench]"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(
    installed: _Installed, args: tuple[str, ...], env: dict[str, str], extra: str
) -> None:
    done = installed.run(*args, **env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and extra in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_bad_argument_in_the_installed_command_is_one_line(installed: _Installed) -> None:
    done = installed.run("token", "")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("draftsync token: error:"), done.stderr


def test_the_readme_python_client_runs_on_the_wheel(installed: _Installed, served: int) -> None:
    """README "Python clients", as written, with nothing but the wheel installed."""
    token = installed.run("token", "importer", "--data", "data")
    assert token.returncode == 0, token.stderr
    done = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", readme_example("Python clients")],
        cwd=installed.home,
        env=installed.env(
            DRAFTSYNC_URL=f"ws://127.0.0.1:{served}/ws", DRAFTSYNC_TOKEN=token.stdout.strip()
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "stored: Spring campaign (imported)\n", done.stdout
