"""README's examples, as tests run them: taken from README.md, never copied."""

from __future__ import annotations

import re

from tests.support.server_process import REPO

__all__ = ["readme_example"]


def readme_example(section: str, language: str = "python") -> str:
    """The first ```{language} block of README's `## {section}` section."""
    readme = (REPO / "README.md").read_text()
    start = readme.index(f"\n## {section}\n")
    end = readme.find("\n## ", start + 1)
    block = re.search(rf"```{language}\n(.*?)```", readme[start : end if end != -1 else None], re.S)
    assert block is not None, f"no {language} block in README section {section!r}"
    return block.group(1)
