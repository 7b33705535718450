from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.server_process import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server per test module, data in a fresh temp dir."""
    process = ServerProcess(tmp_path_factory.mktemp("server"), "--room-grace", "0.3")
    process.start()
    yield process
    process.stop()
