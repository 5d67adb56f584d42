"""The README's complete examples (the python blocks that start with an import) run as
written, on the engine fastgrad chose, in a scratch directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text() if README.exists() else ""
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
COMPLETE = [block for block in BLOCKS if block.startswith(("import ", "from "))]


@pytest.mark.source_tree
@pytest.mark.parametrize("code", COMPLETE, ids=[f"block-{i}" for i in range(len(COMPLETE))])
def test_readme_example_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})


@pytest.mark.source_tree
def test_the_readme_has_complete_examples() -> None:
    assert len(COMPLETE) >= 3
