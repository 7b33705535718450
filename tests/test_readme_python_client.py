"""README "Python clients": its example, exactly as written there, against a real server.

The block is taken from README.md and run as its own program with the environment the README
names; once it has printed (after `durable()` returned) the server is killed with SIGKILL and
restarted, and the edit must be there: the acknowledgement meant "on disk".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.readme import readme_example
from tests.support.server_process import REPO, ServerProcess


def test_the_readme_python_client_edits_a_draft_and_waits_until_it_is_durable(
    tmp_path: Path,
) -> None:
    code = readme_example("Python clients")
    assert "await draft.durable()" in code
    server = ServerProcess(tmp_path / "data").start()
    try:
        token = server.token("importer")
        env = {"DRAFTSYNC_URL": server.ws_url, "DRAFTSYNC_TOKEN": token, "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == "stored: Spring campaign (imported)\n", done.stdout
        server.restart()  # SIGKILL, then start on the same data: only what was committed is back
        answer = httpx.get(
            f"{server.http_url}/api/drafts/spring-campaign",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        state = answer.json()["state"]
        assert state["texts"]["title"] == "Spring campaign (imported)", state
        assert state["fields"]["category"] == "import", state
        assert answer.json()["metadata"]["owner"] == "importer"
    finally:
        server.stop()
