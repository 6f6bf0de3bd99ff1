"""``tracebus runs`` and ``find_runs``: every run of output directories, newest first, on
runs written by the real observers (a live one held by a writer in another process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.conftest import Quiet
from tracebus._lock import run_is_locked, run_lock_path
from tracebus._tools._runs import STATUSES, RunInfo, find_runs
from tracebus._tools._runs_cli import STATUS_CHOICES

from ..cli import assert_one_line_error, run_tracebus
from . import runs


def usage_run(out: Path, workflow_id: str, *, fail: bool = False) -> str:
    """Two nodes with model calls; the second fails when ``fail``. Returns the run id."""

    async def main() -> str:
        async with Quiet.Observer(workflow_id, out, total_nodes=2) as obs:
            async with obs.node("ask", 0) as node:
                await obs.usage("gpt-x", 120, 30, 0.002)
                await obs.usage("gpt-x", 80, 20, 0.001)
                node.output("answer")
            try:
                async with obs.node("check", 1):
                    await obs.usage("small", 10, 5, 0.0001)
                    if fail:
                        raise ValueError("check failed")
            except ValueError:
                pass
            return obs.run_id

    return anyio.run(main)


@pytest.fixture
def several(tmp_path: Path) -> tuple[Path, list[str]]:
    """Three runs of one workflow (the second with a failing node), then an error run of
    another workflow: the first two runs' audit files are archived under previous/."""
    out = tmp_path / "runs"
    ids = [
        usage_run(out, "step_01_ask"),
        usage_run(out, "step_01_ask", fail=True),
        usage_run(out, "step_01_ask"),
    ]
    runs.error_run(out)
    return out, ids


def test_runs_are_listed_newest_first_with_their_figures(several: tuple[Path, list[str]]) -> None:
    out, ids = several
    found = find_runs([out])
    assert [(r.workflow_id, r.status) for r in found] == [
        ("step_05_sync", "error"),
        ("step_01_ask", "complete"),
        ("step_01_ask", "complete"),
        ("step_01_ask", "complete"),
    ]
    assert [r.run_id for r in found[1:]] == ids[::-1]
    newest, failing = found[1], found[2]
    assert (newest.nodes_ok, newest.nodes_failed, newest.nodes_unfinished) == (2, 0, 0)
    assert (failing.nodes_ok, failing.nodes_failed) == (1, 1)
    assert (newest.input_tokens, newest.output_tokens) == (210, 55)
    assert newest.cost_usd == pytest.approx(0.0031)
    assert all(r.source == "metadata" for r in found)
    started = [r.started for r in found]
    assert all(s is not None for s in started)
    assert started == sorted(started, reverse=True)  # type: ignore[type-var]


def test_a_run_lists_every_file_of_it_archives_included(
    several: tuple[Path, list[str]],
) -> None:
    out, _ = several
    found = {r.run_id: r for r in find_runs([out])}
    everything = {p for p in out.rglob("*") if p.is_file()}
    assert set().union(*(r.files for r in found.values())) == everything
    archived = [r for r in found.values() if r.archive is not None]
    assert len(archived) == 2
    for run in archived:
        assert run.archive is not None and run.archive.parent == out / "audit/step_01/previous"
        assert run.metadata is not None and run.metadata.parent == run.archive
        names = {p.relative_to(out).parts[0] for p in run.files}
        assert names == {"traces", "logs", "audit"}
        assert len(run.files) == 5  # two traces, two logs, the metadata
        # the audit trace and log are links of the traces/ and logs/ files: counted once
        assert (
            run.bytes
            == run.files[run.trace]
            + sum(size for path, size in run.files.items() if path.parent.name == "logs")
            + run.files[run.metadata]
        )


def test_the_trace_gives_what_the_metadata_gives(several: tuple[Path, list[str]]) -> None:
    out, _ = several
    from_metadata = find_runs([out])
    for run in from_metadata:
        assert run.metadata is not None
        run.metadata.unlink()
    from_traces = find_runs([out])
    assert all(r.source == "trace" for r in from_traces)
    assert all(r.metadata is None for r in from_traces)
    fields: tuple[str, ...] = (
        "workflow_id",
        "run_id",
        "status",
        "nodes_ok",
        "nodes_failed",
        "nodes_skipped",
    )
    fields += ("nodes_unfinished", "input_tokens", "output_tokens", "trace", "archive")
    for meta, trace in zip(from_metadata, from_traces, strict=True):
        for name in fields:
            assert getattr(meta, name) == getattr(trace, name), name
        assert trace.cost_usd == pytest.approx(meta.cost_usd)
        assert trace.wall_s == pytest.approx(meta.wall_s, abs=0.05)


LIVE_WRITER = textwrap.dedent(
    """
    import sys
    import tracebus

    obs = tracebus.SyncObserver("step_09_live", sys.argv[1], 3, progress=False, console=None)
    obs.node_start("a", 0)
    obs.node_success("a", 0.1)
    obs.node_start("b", 1)
    obs.flush()
    print(obs.run_id, flush=True)
    sys.stdin.readline()
    obs.close()
    """
)


@pytest.fixture
def live_writer(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, str]]:
    """A process writing a run of ``step_09_live`` until its stdin gets a line."""
    out = tmp_path / "live"
    process = subprocess.Popen(
        [sys.executable, "-c", LIVE_WRITER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        run_id = process.stdout.readline().strip()
        assert run_id, "the writer did not start"
        yield process, out, run_id
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def test_a_run_being_written_is_running(
    live_writer: tuple[subprocess.Popen[str], Path, str],
) -> None:
    process, out, run_id = live_writer
    (run,) = find_runs([out])
    assert (run.run_id, run.status, run.source) == (run_id, "running", "trace")
    assert (run.nodes_ok, run.nodes_unfinished) == (1, 1)
    assert run_lock_path(out, "step_09_live", run_id) in run.files
    assert process.stdin is not None
    process.stdin.write("end\n")
    process.stdin.flush()
    assert process.wait(timeout=60) == 0
    (run,) = find_runs([out])
    assert (run.status, run.source) == ("complete", "metadata")
    assert not (out / ".tracebus").exists()  # the writer removed its lock with the run written


def test_a_killed_writer_leaves_an_incomplete_run_and_no_lock_held(
    live_writer: tuple[subprocess.Popen[str], Path, str],
) -> None:
    process, out, run_id = live_writer
    assert run_is_locked(out, "step_09_live", run_id)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert not run_is_locked(out, "step_09_live", run_id)
    (run,) = find_runs([out])
    assert (run.status, run.nodes_ok, run.nodes_unfinished) == ("incomplete", 1, 1)


def test_a_seed_run_and_several_output_directories(tmp_path: Path) -> None:
    seed = runs.seed_run(tmp_path / "seed")
    ours = runs.failure_run(tmp_path / "ours")
    found = find_runs([ours, seed, ours])  # a directory given twice is listed once
    assert sorted(r.workflow_id for r in found) == ["step_02_populate", "step_04_checks"]
    seed_run = next(r for r in found if r.output_dir == seed)
    assert seed_run.run_id is None and seed_run.status == "complete"
    assert find_runs([tmp_path]) == find_runs([ours, seed])  # a folder of output directories


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = run_tracebus("runs", *args)
    assert "Traceback" not in done.stderr
    return done


def test_the_table_and_json(several: tuple[Path, list[str]]) -> None:
    out, ids = several
    done = run_cli(out)
    assert done.returncode == 0
    header, *rows = done.stdout.splitlines()
    assert header.split() == [
        "WORKFLOW", "RUN", "STATUS", "STARTED", "WALL", "OK", "FAILED", "SKIPPED",
        "UNFINISHED", "COST", "TOKENS", "IN/OUT",
    ]  # fmt: skip
    assert len(rows) == 4
    error = rows[0].split()
    assert (error[0], error[2]) == ("step_05_sync", "error")
    cells = rows[1].split()
    assert cells[:3] == ["step_01_ask", ids[2][:12], "complete"]
    assert cells[-6:] == ["2", "0", "0", "0", "$0.0031", "210/55"]
    assert rows[2].split()[-6:-2] == ["1", "1", "0", "0"]
    listed = json.loads(run_cli(out, "--json").stdout)
    assert listed == [r.to_json() for r in find_runs([out])]
    assert [r["run_id"] for r in listed[1:]] == ids[::-1]


def test_filters(several: tuple[Path, list[str]]) -> None:
    out, ids = several
    by_workflow = json.loads(run_cli(out, "--json", "--workflow", "step_01_ask").stdout)
    assert [r["run_id"] for r in by_workflow] == ids[::-1]
    errors = json.loads(run_cli(out, "--json", "--status", "error").stdout)
    assert [r["workflow_id"] for r in errors] == ["step_05_sync"]
    both = run_cli(out, "--status", "running", "--status", "incomplete")
    assert (both.returncode, both.stdout) == (0, "no runs\n")


def test_a_missing_directory_is_a_one_line_error(tmp_path: Path) -> None:
    assert_one_line_error(run_cli(tmp_path / "nope"), "tracebus runs: error:", "no such directory")
    (tmp_path / "notes.txt").write_text("not runs")
    assert_one_line_error(run_cli(tmp_path), "not an output directory")
    assert_one_line_error(run_cli(tmp_path / "notes.txt"), "not a directory")
    assert run_cli(tmp_path, "--status", "late").returncode == 2


def test_the_status_choices_are_the_statuses() -> None:
    assert STATUS_CHOICES == STATUSES
    assert RunInfo.__dataclass_fields__["status"].type == "Status"


def test_the_compat_observer_holds_the_lock_while_it_runs(tmp_path: Path) -> None:
    from tracebus.compat import ExecutionObserver

    out = tmp_path / "compat"
    obs = ExecutionObserver("step_10_compat", out, 1, use_tqdm=False)
    obs.node_start("a", 0)
    (run,) = find_runs([out])
    assert run.status == "running"
    obs.node_success("a", 0.1, "done")
    obs.workflow_complete()
    (run,) = find_runs([out])
    assert (run.status, run.nodes_ok) == ("complete", 1)


def test_unreadable_metadata_is_a_warning_and_the_trace_answers(tmp_path: Path) -> None:
    out = runs.failure_run(tmp_path / "runs")
    (before,) = find_runs([out])
    assert before.metadata is not None
    before.metadata.write_text("{not json")
    (after,) = find_runs([out])
    assert (after.status, after.nodes_ok, after.nodes_failed) == ("complete", 3, 2)
    assert after.source == "trace"
    assert after.metadata == before.metadata  # still the run's file, to remove with it
    assert any("unreadable" in warning for warning in after.warnings)
    done = run_cli(out)
    assert done.returncode == 0
    assert done.stderr.startswith("tracebus runs: 1 run(s) with warnings, the first: metadata ")
    assert done.stderr.rstrip().endswith("(--json lists them all)")
    assert run_cli(out, "--json").stderr == ""
