"""The README's complete examples (the python blocks that start with an import) run as
written, on the engine fastgrad chose, in a scratch directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text() if README.exists() else ""
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
COMPLETE = [block for block in BLOCKS if block.startswith(("import ", "from "))]
# a script with worker processes runs as a user runs it: `python script.py`
SCRIPTS = [block for block in COMPLETE if 'if __name__ == "__main__":' in block]
COMPLETE = [block for block in COMPLETE if block not in SCRIPTS]


@pytest.mark.source_tree
@pytest.mark.parametrize("code", COMPLETE, ids=[f"block-{i}" for i in range(len(COMPLETE))])
def test_readme_example_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})


@pytest.mark.source_tree
def test_the_readme_has_complete_examples() -> None:
    assert len(COMPLETE) >= 3


@pytest.mark.source_tree
@pytest.mark.parametrize("code", SCRIPTS, ids=[f"script-{i}" for i in range(len(SCRIPTS))])
def test_readme_script_runs(code: str, tmp_path: Path) -> None:
    if "fastgrad.distributed" in code:
        pytest.importorskip("distributed", reason="Dask is optional: fastgrad[distributed]")
    script = tmp_path / "example.py"
    script.write_text(code)
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
