"""The README and the pages of docs/: their Python examples run as written, their links and the
names they cite lead somewhere, and the README states the test command CI runs."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS, ROOT / "benchmarks" / "README.md", ROOT / "CONTRIBUTING.md"]


def examples(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def run_in_order(page: Path, cwd: Path) -> None:
    # Later examples read the runs earlier ones wrote, as a reader of the page would.
    for index, example in enumerate(examples(page)):
        result = subprocess.run(
            [sys.executable, "-c", example],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{page.name}, example {index}:\n{example}\n{result.stderr}"


def test_readme_has_examples() -> None:
    assert len(examples(README)) >= 3


def test_readme_examples_run_in_order(tmp_path: Path) -> None:
    run_in_order(README, tmp_path)
    assert list(tmp_path.glob("runs/traces/*.jsonl"))


@pytest.mark.parametrize("page", [page for page in DOCS if examples(page)], ids=lambda p: p.name)
def test_docs_examples_run_in_order(page: Path, tmp_path: Path) -> None:
    # A reader of docs/ has run the README's quickstart: `tracebus demo` wrote ./runs.
    demo = [sys.executable, "-m", "tracebus", "demo", "--nodes", "20", "--seed", "1"]
    subprocess.run([*demo, "--no-progress"], cwd=tmp_path, capture_output=True, check=True)
    run_in_order(page, tmp_path)


def test_readme_states_the_test_command_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    command = ci.split("# The README's test command.\n", 1)[1].splitlines()[0]
    assert command.startswith("python -m pip install")
    assert f"```sh\n{command}\n```" in README.read_text()


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, '-' for ' '."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files_and_headings(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} leads nowhere"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: {target} names no heading"


#: Where a page's ``.py`` file may be, besides beside the page: a path from the root or from
#: the package.
SOURCES = [ROOT, ROOT / "src" / "tracebus"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_files_exist(page: Path) -> None:
    for cited in re.findall(r"`((?:[\w.-]+/)*[\w.-]+\.py)`", page.read_text()):
        assert any((where / cited).is_file() for where in [page.parent, *SOURCES]), (
            f"{page.name}: `{cited}` is no file"
        )


def cited_names(page: Path) -> list[str]:
    """The ``tracebus.…`` names a page cites in code spans (a NATS subject is not one)."""
    return re.findall(r"`(tracebus(?:\.\w+)+)(?=[`(\[])", page.read_text())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_names_exist(page: Path) -> None:
    for name in cited_names(page):
        parts = name.split(".")
        for split in range(len(parts), 0, -1):
            try:
                value: object = importlib.import_module(".".join(parts[:split]))
            except ModuleNotFoundError:
                continue
            for attribute in parts[split:]:
                assert hasattr(value, attribute), f"{page.name}: `{name}` does not exist"
                value = getattr(value, attribute)
            break
