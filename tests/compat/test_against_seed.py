"""The compat observer against a stand-in of the old one, both driving the same thread-pool
runner (``runner.py``) as processes: what the old observer's user saw must all be there.

Each scenario runs the runner once (or twice: a rerun) with each observer, in directories of
their own, and compares, after normalising times, pids, ids and stamps: the exit code, every
field of every log line and trace line, the header and summary on the console and in the
log, the metadata, the progress bar's counts, the files' places and modes.

Differences kept on purpose (documented in docs/migration.md) are not compared:
the old bar's every redraw in the logs (tracebus logs a line a second), the old per-node
console lines printed in two halves, the order of the summary and the last log line, and a
rerun's audit files (tracebus moves the previous run's into ``previous/``; the old observer
appended to them: their union is compared).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .compare import (
    Normaliser,
    bar_counts,
    blocks,
    compare_blocks,
    compare_fields,
    compare_layouts,
    compare_logs,
    compare_traces,
    read_logs,
    read_traces,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Scenario:
    name: str
    args: tuple[str, ...]
    absolute: bool = False
    runs: int = 1
    umask: int = 0o022
    exit_code: int = 0

    def __str__(self) -> str:
        return self.name


SCENARIOS = [
    Scenario("spaces-relative-bar", ("--workflow", "simple analysis workflow", "--workers", "4")),
    Scenario(
        "failure-absolute-bar",
        ("--workflow", "step_05_publication_extraction"),
        absolute=True,
        exit_code=1,
    ),
    Scenario(
        "failure-relative-plain",
        ("--workflow", "step_05_publication_extraction", "--no-tqdm"),
        exit_code=1,
    ),
    Scenario("rerun-umask-002", ("--workflow", "step_04_populate_mpd"), runs=2, umask=0o002),
    Scenario(
        "unicode-absolute-umask-027",
        ("--workflow", "étape_06 analyse des données", "--no-tqdm"),
        absolute=True,
        umask=0o027,
    ),
    Scenario("fan-out-200", ("--fan-out", "200", "--latency", "0.001"), absolute=True),
    Scenario("fan-out-2000-plain", ("--fan-out", "2000", "--workers", "16", "--no-tqdm")),
]


@dataclass
class Outcome:
    root: Path
    exit_codes: list[int]
    stdout: str
    stderr: str

    @property
    def out(self) -> Path:
        return self.root / "runs"


def _run(observer: str, scenario: Scenario, root: Path) -> Outcome:
    root.mkdir()
    out = str(root / "runs") if scenario.absolute else "runs"
    codes, stdout, stderr = [], [], []
    for _ in range(scenario.runs):
        done = subprocess.run(
            [sys.executable, "-m", "tests.compat.runner", "--observer", observer, "--out", out]
            + list(scenario.args),
            cwd=root,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *_python_path()])},
            umask=scenario.umask,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        codes.append(done.returncode)
        stdout.append(done.stdout)
        stderr.append(done.stderr)
    return Outcome(root, codes, "".join(stdout), "".join(stderr))


@pytest.fixture(scope="module", params=SCENARIOS, ids=str)
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Scenario, Outcome, Outcome]:
    """One scenario's runs with each observer, shared by the tests that compare them."""
    scenario: Scenario = request.param
    where = tmp_path_factory.mktemp(scenario.name)
    seed = _run("seed", scenario, where / "seed")
    ours = _run("tracebus", scenario, where / "tracebus")
    assert seed.exit_codes == [scenario.exit_code] * scenario.runs, seed.stderr
    return scenario, seed, ours


def test_same_exit_codes(runs: tuple[Scenario, Outcome, Outcome]) -> None:
    _, seed, ours = runs
    assert ours.exit_codes == seed.exit_codes, ours.stderr


def test_every_log_line_keeps_the_old_fields_and_the_log_its_blocks(
    runs: tuple[Scenario, Outcome, Outcome],
) -> None:
    _, seed, ours = runs
    seed_norm, our_norm = Normaliser(seed.root), Normaliser(ours.root)
    problems = []
    for pattern in ("runs/logs/*.log", "runs/audit/step_*/**/log_*.log"):
        problems += compare_logs(
            read_logs(seed.root, pattern),
            read_logs(ours.root, pattern),
            seed_norm,
            our_norm,
            pattern,
        )
    assert problems == []


def test_every_trace_line_keeps_the_old_fields(runs: tuple[Scenario, Outcome, Outcome]) -> None:
    _, seed, ours = runs
    seed_norm, our_norm = Normaliser(seed.root), Normaliser(ours.root)
    problems = []
    for pattern in ("runs/traces/*.jsonl", "runs/audit/step_*/**/trace_*.jsonl"):
        problems += compare_traces(
            read_traces(seed.root, pattern),
            read_traces(ours.root, pattern),
            seed_norm,
            our_norm,
            pattern,
        )
    assert problems == []


def test_console_shows_every_line_of_the_old_header_and_summary(
    runs: tuple[Scenario, Outcome, Outcome],
) -> None:
    _, seed, ours = runs
    problems = compare_blocks(
        "stdout",
        blocks(seed.stdout.splitlines()),
        blocks(ours.stdout.splitlines()),
        Normaliser(seed.root),
        Normaliser(ours.root),
    )
    assert problems == []


def test_metadata_keeps_the_old_fields(runs: tuple[Scenario, Outcome, Outcome]) -> None:
    _, seed, ours = runs
    (seed_file,) = seed.out.glob("audit/step_*/metadata_*.json")
    old = json.loads(seed_file.read_text())
    new = _metadata(ours.out / seed_file.relative_to(seed.out))
    problems = compare_fields(
        "metadata",
        old,
        new,
        ordered=False,
        seed_norm=Normaliser(seed.root),
        our_norm=Normaliser(ours.root),
    )
    assert problems == []
    if "error" in old:  # the old interface reports no cost for a failed run
        assert "cumulative_cost_usd" not in old
        assert (new["status"], new["cumulative_cost_usd"]) == ("error", None)


def test_files_are_where_they_were_with_the_same_modes(
    runs: tuple[Scenario, Outcome, Outcome],
) -> None:
    _, seed, ours = runs
    assert compare_layouts(seed.root, ours.root) == []


def test_progress_bar_counts_what_the_old_bar_counted(
    runs: tuple[Scenario, Outcome, Outcome],
) -> None:
    scenario, seed, ours = runs
    if "--no-tqdm" in scenario.args:
        assert bar_counts(ours.stderr) == bar_counts(seed.stderr) == []
        return
    # the last figure of each run's bar, on stderr and in its log
    assert bar_counts(ours.stderr)[-1] == bar_counts(seed.stderr)[-1]
    for pattern in ("runs/logs/*.log", "runs/audit/step_*/log_*.log"):
        seed_log, our_log = read_logs(seed.root, pattern), read_logs(ours.root, pattern)
        assert bar_counts(our_log)[-1] == bar_counts(seed_log)[-1], pattern


def _python_path() -> list[str]:
    return [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]


def _metadata(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
