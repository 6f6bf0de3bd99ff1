"""``tracebus prune``: what goes and what stays, on runs written by the real observers (one
of them still being written by another process)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tracebus._catalog import catalog
from tracebus._retention import Retention, plan
from tracebus._tools._runs import find_runs

from ..cli import assert_one_line_error, run_tracebus
from . import runs
from .test_runs import live_writer as live_writer  # noqa: F401 (a fixture)
from .test_runs import several as several  # noqa: F401 (a fixture)
from .test_runs import usage_run


def prune(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = run_tracebus("prune", *args)
    assert "Traceback" not in done.stderr
    return done


def files_under(out: Path) -> set[Path]:
    return {path for path in out.rglob("*") if path.is_file()}


def test_keep_removes_the_older_runs_of_each_workflow_whole(
    several: tuple[Path, list[str]],
) -> None:
    out, ids = several
    before = find_runs([out])
    gone = [r for r in before if r.run_id in ids[:2]]
    done = prune(out, "--keep", "1", "--json")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert [r["run_id"] for r in outcome["removed"]] == ids[:2]  # oldest first
    assert outcome["bytes_freed"] == sum(r.bytes for r in gone)
    assert [r["freed"] for r in outcome["removed"]] == [r.bytes for r in gone[::-1]]
    assert (outcome["kept"], outcome["running"], outcome["failed"]) == (2, [], [])
    after = find_runs([out])
    assert [r.run_id for r in after] == [r.run_id for r in before if r not in gone]
    # every file of the removed runs went, the archives with them; the others' are untouched
    assert files_under(out) == set().union(*(r.files for r in after))
    assert not (out / "audit/step_01/previous").exists()
    assert all(r.files == r2.files for r, r2 in zip(after, find_runs([out]), strict=True))


def test_dry_run_lists_what_would_go_and_removes_nothing(
    several: tuple[Path, list[str]],
) -> None:
    out, ids = several
    before = files_under(out)
    done = prune(out, "--keep", "2", "--dry-run")
    assert done.returncode == 0, done.stderr
    *lines, total = done.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"would remove  step_01_ask  {ids[0][:12]}  complete  ")
    (oldest,) = [r for r in find_runs([out]) if r.run_id == ids[0]]
    size = f"{oldest.bytes / 1024:.1f} KiB"
    assert lines[0].endswith(size)
    assert total == f"would remove 1 run(s), would free {size}; kept 3"
    assert files_under(out) == before
    as_json = json.loads(prune(out, "--keep", "2", "--dry-run", "--json").stdout)
    assert as_json["dry_run"] is True
    assert as_json["bytes_freed"] == oldest.bytes
    assert files_under(out) == before


def test_older_than_keeps_the_young_runs(several: tuple[Path, list[str]]) -> None:
    out, _ = several
    before = files_under(out)
    assert json.loads(prune(out, "--older-than", "1", "--json").stdout)["removed"] == []
    assert files_under(out) == before
    # both rules: a run goes when neither keeps it
    stored = catalog(out)
    two_days_on = time.time() + 2 * 86400
    outcome = plan(stored, Retention(keep=1, older_than_days=1), now=two_days_on)
    assert len(outcome.remove) == 2 and len(outcome.keep) == 2
    outcome = plan(stored, Retention(keep=1, older_than_days=3), now=two_days_on)
    assert outcome.remove == []
    done = prune(out, "--older-than", "0", "--json")
    assert len(json.loads(done.stdout)["removed"]) == 4
    assert files_under(out) == set()


def test_a_running_run_is_never_removed(
    live_writer: tuple[subprocess.Popen[str], Path, str],
) -> None:
    process, out, run_id = live_writer
    older = [usage_run(out, "step_09_live") for _ in range(2)]
    (live,) = [r for r in find_runs([out]) if r.status == "running"]
    done = prune(out, "--keep", "0", "--json")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert sorted(r["run_id"] for r in outcome["removed"]) == sorted(older)
    assert [r["run_id"] for r in outcome["running"]] == [run_id]
    (left,) = find_runs([out])
    assert (left.run_id, left.status, left.files.keys()) == (run_id, "running", live.files.keys())
    text = prune(out, "--keep", "0").stdout.splitlines()
    assert text == [
        f"running, kept  step_09_live  {run_id}",
        "removed 0 run(s), freed 0 B; kept 1 (1 running)",
    ]
    assert process.stdin is not None
    process.stdin.write("end\n")
    process.stdin.flush()
    assert process.wait(timeout=60) == 0
    assert [r.status for r in find_runs([out])] == ["complete"]


def test_a_run_whose_removal_stopped_after_its_metadata_reads_alike_and_goes_next_time(
    tmp_path: Path,
) -> None:
    out = runs.failure_run(tmp_path / "runs")
    runs.failure_run(out)
    (oldest, newest) = sorted(find_runs([out]), key=lambda r: str(r.started))
    assert oldest.metadata is not None
    oldest.metadata.unlink()  # the first file a removal takes
    (reread,) = [r for r in find_runs([out]) if r.run_id == oldest.run_id]
    assert (reread.status, reread.nodes_ok, reread.nodes_failed, reread.source) == (
        oldest.status,
        oldest.nodes_ok,
        oldest.nodes_failed,
        "trace",
    )
    assert prune(out, "--keep", "1").returncode == 0
    assert [r.run_id for r in find_runs([out])] == [newest.run_id]
    assert files_under(out) == set(newest.files)


def test_a_seed_run_is_pruned_like_the_others(tmp_path: Path) -> None:
    seed = runs.seed_run(tmp_path / "seed")
    done = prune(seed, "--keep", "0", "--json")
    assert [r["workflow_id"] for r in json.loads(done.stdout)["removed"]] == ["step_02_populate"]
    assert files_under(seed) == set()


def test_bad_usage_is_a_one_line_error(tmp_path: Path) -> None:
    out = runs.failure_run(tmp_path / "runs")
    assert_one_line_error(prune(out), "tracebus prune: error:", "--keep N, --older-than DAYS")
    assert_one_line_error(prune(tmp_path / "nope", "--keep", "1"), "no such directory")
    assert prune(out, "--keep", "-1").returncode == 2
    assert prune(out, "--older-than", "soon").returncode == 2
    assert len(find_runs([out])) == 1


def test_workflow_limits_what_is_pruned(several: tuple[Path, list[str]]) -> None:
    out, ids = several
    done = prune(out, "--keep", "0", "--workflow", "step_05_sync", "--json")
    assert [r["workflow_id"] for r in json.loads(done.stdout)["removed"]] == ["step_05_sync"]
    assert [r.run_id for r in find_runs([out])] == ids[::-1]
