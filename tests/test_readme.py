"""The README's Python examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 2


def test_readme_examples_run_in_order(tmp_path: Path) -> None:
    # Later examples read the runs earlier ones wrote, as a reader of the README would.
    for index, example in enumerate(EXAMPLES):
        result = subprocess.run(
            [sys.executable, "-c", example],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"example {index}:\n{example}\n{result.stderr}"
    assert list(tmp_path.glob("runs/traces/*.jsonl"))
