from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import tracebus
from tracebus import RunNotFoundError, TraceFormatError, read_run, read_trace

from . import runs


def test_success_run_reads_nodes_costs_and_notes(success_dir: Path) -> None:
    run = read_run(success_dir)
    assert run.workflow_id == "step_03_load"
    assert run.run_id and len(run.run_id) == 32
    assert run.status == "complete" and run.ok and run.error is None
    assert run.total_nodes == 4
    assert [n.node_id for n in run.nodes] == ["extract", "enrich", "score", "publish"]
    assert [n.node_index for n in run.nodes] == [0, 1, 2, 3]
    assert {n.status for n in run.nodes} == {"success"}
    assert run.cost_usd == pytest.approx(0.035)
    assert {n.node_id: n.cost_usd for n in run.nodes}["enrich"] == pytest.approx(0.02)
    publish = run.nodes[-1].attempts[0]
    assert publish.output_hash == tracebus.hash_output("done")
    assert publish.output_summary == "done"
    assert [note["message"] for note in run.notes] == ["halfway"]
    assert run.notes[0]["fields"] == {"rows": 30}
    assert run.metadata is not None and run.metadata["run_id"] == run.run_id
    assert run.metadata_file == success_dir / "audit" / "step_03" / "metadata_03.json"
    assert not run.seed_format and run.torn_line is None and run.warnings == ()


def test_every_way_of_naming_a_run_reads_the_same_run(success_dir: Path) -> None:
    audit = success_dir / "audit" / "step_03"
    names = [
        success_dir,
        runs.only_trace(success_dir),
        audit,
        audit / "trace_03.jsonl",
        audit / "metadata_03.json",
    ]
    read = [read_run(name) for name in names]
    assert {r.run_id for r in read} == {read[0].run_id}
    assert all(r.metadata is not None for r in read)
    assert {len(r.events) for r in read} == {len(read[0].events)}


def test_output_dir_means_its_latest_run(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    runs.failure_run(out)
    runs.success_run(out)  # a different step, a later stamp or suffix
    assert read_run(out).workflow_id == "step_03_load"


def test_rerun_of_a_step_pairs_each_trace_with_its_own_metadata(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    runs.failure_run(out)
    runs.failure_run(out)  # the first run's audit files move to audit/step_04/previous/
    traces = sorted(out.glob("traces/*.jsonl"))
    assert len(traces) == 2
    first, second = (read_run(t) for t in traces)
    assert first.run_id != second.run_id
    assert first.metadata is not None and first.metadata["run_id"] == first.run_id
    assert second.metadata is not None and second.metadata["run_id"] == second.run_id
    assert read_run(out).run_id in {first.run_id, second.run_id}


def test_failures_are_final_attempt_failures_with_their_errors(failure_dir: Path) -> None:
    run = read_run(failure_dir)
    assert run.status == "complete" and not run.ok
    assert [(n.node_id, n.error) for n in run.failed_nodes] == [
        ("b", "ValueError: bad input in b"),
        ("d", "ValueError: bad input in d"),
    ]


def test_workflow_error_is_the_run_status(error_dir: Path) -> None:
    run = read_run(error_dir)
    assert run.status == "error"
    assert run.error == "ConnectionError: database unreachable"
    assert not run.ok


def test_retries_make_attempts_and_the_last_attempt_decides(retry_dir: Path) -> None:
    run = read_run(retry_dir)
    nodes = {n.node_id: n for n in run.nodes}
    fetch, parse, upload, cache = (nodes[k] for k in ("fetch", "parse", "upload", "cache"))
    assert [a.status for a in fetch.attempts] == ["failed", "success"]
    assert fetch.status == "success" and fetch.retried and fetch.error is None
    assert [a.number for a in fetch.attempts] == [1, 2]
    assert fetch.attempts[0].error == "TimeoutError: upstream slow"
    assert len(parse.attempts) == 1 and parse.retried and parse.status == "success"
    assert parse.retries[0]["error"] == "lock busy"
    assert upload.status == "failed" and len(upload.attempts) == 2
    assert upload.error == "OSError: disk full"
    assert cache.status == "skipped" and cache.attempts[0].fields["reason"] == "up to date"
    assert [n.node_id for n in run.failed_nodes] == ["upload"]


def test_torn_last_line_is_reported_not_fatal(torn_dir: Path) -> None:
    run = read_run(torn_dir)
    clean = read_run(torn_dir / "audit" / "step_03")
    assert run.status == "complete" and len(run.nodes) == 4
    assert run.torn_line == len(run.events) + 1
    assert len(clean.events) == len(run.events)
    assert any("torn last line" in w for w in run.warnings)
    # read_trace keeps its quiet behaviour
    assert len(list(read_trace(runs.only_trace(torn_dir)))) == len(run.events)


def test_killed_run_is_incomplete_with_unfinished_nodes(tmp_path: Path) -> None:
    out = runs.success_run(tmp_path / "killed")
    trace = runs.only_trace(out)
    lines = trace.read_bytes().splitlines(keepends=True)
    # keep everything up to the first node_success: three nodes started, none ended
    cut = next(i for i, line in enumerate(lines) if b'"node_success"' in line)
    trace.write_bytes(b"".join(lines[:cut]))
    run = read_run(trace)
    assert run.status == "incomplete"
    assert [n.status for n in run.nodes] == ["running"] * 3
    assert all(n.attempts[0].end is None for n in run.nodes)


def test_empty_run_and_empty_trace(empty_dir: Path, tmp_path: Path) -> None:
    run = read_run(empty_dir)
    assert run.status == "complete" and run.ok
    assert run.nodes == () and run.total_nodes == 0
    empty = tmp_path / "blank" / "traces" / "trace_step_00_20260101_000000.jsonl"
    empty.parent.mkdir(parents=True)
    empty.touch()
    blank = read_run(empty.parent.parent)
    assert blank.status == "incomplete" and blank.events == () and blank.started is None
    assert blank.wall_seconds == 0.0


def test_seed_format_trace_and_metadata(seed_dir: Path) -> None:
    run = read_run(seed_dir)
    assert run.seed_format and run.run_id is None
    assert run.workflow_id == "step_02_populate"
    assert run.status == "complete"
    assert [n.node_id for n in run.nodes] == ["node_0", "node_1", "node_2", "node_3"]
    # the seed drops node_index 0 and never writes it on end events
    assert [n.node_index for n in run.nodes] == [None, 1, 2, 3]
    assert [n.node_id for n in run.failed_nodes] == ["node_2"]
    assert run.failed_nodes[0].error == "KeyError: 'id'"
    assert run.cost_usd == pytest.approx(0.42)
    assert run.metadata_file == seed_dir / "audit" / "step_02" / "metadata_02.json"
    assert run.wall_seconds == pytest.approx(4.3, abs=0.01)


def test_seed_audit_trace_holding_several_runs_reads_the_last(tmp_path: Path) -> None:
    out = tmp_path / "seed"
    runs.seed_run(out)
    again = runs.SeedWriter(out, "step_02_populate", total_nodes=1)
    again.node("only", 0, 1.0)
    again.complete()
    run = read_run(out / "audit" / "step_02")
    assert [n.node_id for n in run.nodes] == ["only"]
    assert any("holds 2 runs" in w for w in run.warnings)


def test_unknown_event_types_and_fields_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "future"
    seed = runs.SeedWriter(out, "wf", total_nodes=1)
    seed.entry("node_checkpoint", node_id="n", details={"epoch_seconds": seed.tick(0.1), "k": 1})
    seed.entry(
        "node_success",
        node_id="n",
        details={"epoch_seconds": seed.tick(0.1), "duration_seconds": 0.1, "gpu_seconds": 3.5},
    )
    seed.complete()
    run = read_run(out)
    assert [e["event_type"] for e in run.unknown_events] == ["node_checkpoint"]
    assert run.unknown_events[0]["k"] == 1
    assert run.nodes[0].attempts[0].fields["gpu_seconds"] == 3.5
    assert any("node_checkpoint" in w for w in run.warnings)


def test_dropped_events_are_warned_about(success_dir: Path) -> None:
    metadata_file = success_dir / "audit" / "step_03" / "metadata_03.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["events_dropped"] = 7
    metadata_file.write_text(json.dumps(metadata))
    run = read_run(metadata_file)
    assert any("7 event(s) dropped" in w for w in run.warnings)


def test_unreadable_metadata_is_a_warning(success_dir: Path) -> None:
    (success_dir / "audit" / "step_03" / "metadata_03.json").write_text("{not json")
    run = read_run(success_dir / "audit" / "step_03")
    assert run.metadata is None and run.status == "complete"
    assert any("unreadable" in w for w in run.warnings)


def test_paths_that_hold_no_run_raise(tmp_path: Path) -> None:
    with pytest.raises(RunNotFoundError, match="no such file"):
        read_run(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RunNotFoundError, match="not a run"):
        read_run(tmp_path / "plain")
    (tmp_path / "fresh" / "traces").mkdir(parents=True)
    with pytest.raises(RunNotFoundError, match="no trace"):
        read_run(tmp_path / "fresh")
    assert issubclass(RunNotFoundError, FileNotFoundError)


def test_a_bad_line_before_the_last_raises_naming_it(success_dir: Path) -> None:
    trace = runs.only_trace(success_dir)
    lines = trace.read_text().splitlines(keepends=True)
    lines[2] = "garbage\n"
    trace.write_text("".join(lines))
    with pytest.raises(TraceFormatError, match=rf"{trace.name}:3: not a JSON object"):
        read_run(trace)


def test_run_moved_elsewhere_still_finds_its_metadata(success_dir: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(success_dir, moved)
    shutil.rmtree(success_dir)
    run = read_run(moved)
    assert run.metadata is not None
    assert os.fspath(run.trace_file).startswith(os.fspath(moved))


def test_public_names_are_exported() -> None:
    for name in ("read_run", "RunRecord", "NodeRecord", "NodeAttempt", "RunNotFoundError"):
        assert name in tracebus.__all__ and hasattr(tracebus, name)
    assert sorted(tracebus.__all__) == sorted(
        n for n in dir(tracebus) if not n.startswith("_") and n in tracebus.__all__
    )
