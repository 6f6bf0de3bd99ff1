"""tracebus.compat.ExecutionObserver: the seed observer's interface over the bus."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_consistent_run
from tracebus import BusClosedError, current_node, read_run, read_trace
from tracebus.cli import main
from tracebus.compat import ExecutionObserver, ProgressView


class _SeedSignatures:
    """The seed observer's public signatures, bodies left out."""

    def __init__(
        self, workflow_id: str, output_dir: str, total_nodes: int, use_tqdm: bool = True
    ) -> None: ...

    def node_start(self, node_id: str, node_index: int) -> None: ...

    def node_success(
        self,
        node_id: str,
        duration_seconds: float,
        output_hash: str | None = None,
        output_summary: dict[str, Any] | None = None,
    ) -> None: ...

    def node_failure(self, node_id: str, error_msg: str, duration_seconds: float) -> None: ...

    def workflow_complete(self, cumulative_cost_usd: float = 0.0) -> None: ...

    def workflow_error(self, error_msg: str) -> None: ...

    @staticmethod
    def hash_output(data: Any) -> str:
        raise NotImplementedError


def _shape(func: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


def _files(obs: ExecutionObserver) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
    trace = list(read_trace(obs.trace_file))
    log = obs.log_file.read_text()
    metadata = json.loads((obs.audit_dir / f"metadata_{obs.step_num}.json").read_text())
    return trace, log, metadata


def _types(trace: list[dict[str, Any]]) -> list[str]:
    return [event["event_type"] for event in trace]


@pytest.mark.parametrize(
    "name",
    [
        "__init__",
        "node_start",
        "node_success",
        "node_failure",
        "workflow_complete",
        "workflow_error",
        "hash_output",
    ],
)
def test_signatures_match_the_seed(name: str) -> None:
    assert _shape(getattr(ExecutionObserver, name)) == _shape(getattr(_SeedSignatures, name))


def test_hash_output_is_static_and_matches_the_seed_algorithm() -> None:
    assert isinstance(inspect.getattr_static(ExecutionObserver, "hash_output"), staticmethod)
    data = {"b": [1, 2], "a": "x"}
    expected = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    assert ExecutionObserver.hash_output(data) == expected
    assert ExecutionObserver.hash_output([1, 2]) == hashlib.sha256(b"[1, 2]").hexdigest()[:16]


def test_constructor_exposes_the_seed_attributes_and_makes_the_directories(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    obs = ExecutionObserver("step_04_populate_mpd", str(out), 12, use_tqdm=False)
    try:
        for directory in (obs.logs_dir, obs.traces_dir, obs.audit_dir):
            assert directory.is_dir()
        stamp = obs.start_time.strftime("%Y%m%d_%H%M%S")
        assert obs.workflow_id == "step_04_populate_mpd"
        assert obs.output_dir == out and isinstance(obs.output_dir, Path)
        assert (obs.total_nodes, obs.use_tqdm, obs.pid) == (12, False, os.getpid())
        assert isinstance(obs.start_time, datetime)
        assert obs.step_num == "04"
        assert obs.logs_dir == out / "logs"
        assert obs.traces_dir == out / "traces"
        assert obs.audit_dir == out / "audit" / "step_04"
        assert obs.log_file == out / "logs" / f"execution_step_04_populate_mpd_{stamp}.log"
        assert obs.trace_file == out / "traces" / f"trace_step_04_{stamp}.jsonl"
        assert obs.audit_log_file == obs.audit_dir / "log_04.log"
        assert obs.audit_trace_file == obs.audit_dir / "trace_04.jsonl"
        assert obs.progress_bar is None
        assert (obs.nodes_completed, obs.nodes_failed) == (0, 0)
        assert obs.node_times == {} and obs.node_outputs == {}
    finally:
        obs.workflow_complete()


def test_step_number_defaults_to_00(tmp_path: Path) -> None:
    obs = ExecutionObserver("unknown_workflow", tmp_path, 0, use_tqdm=False)
    obs.workflow_complete()
    assert obs.step_num == "00"
    assert obs.audit_dir == tmp_path / "audit" / "step_00"


def test_counters_and_dicts_update_in_the_call(tmp_path: Path) -> None:
    obs = ExecutionObserver("step_01_counts", tmp_path, 3, use_tqdm=False)
    obs.node_start("a", 1)
    assert obs.current_node_id == "a"
    obs.node_success("a", 0.5, "h1", {"rows": 3})
    assert obs.nodes_completed == 1
    assert obs.node_times == {"a": 0.5}
    assert obs.node_outputs == {"a": {"rows": 3}}
    obs.node_success("b", 0.25)
    assert obs.nodes_completed == 2
    assert obs.node_outputs == {"a": {"rows": 3}}
    obs.node_failure("c", "boom", 0.75)
    assert (obs.nodes_completed, obs.nodes_failed) == (2, 1)
    assert obs.node_times == {"a": 0.5, "b": 0.25, "c": 0.75}
    obs.workflow_complete()


def test_workflow_complete_writes_trace_log_and_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    obs = ExecutionObserver("step_02_done", tmp_path, 2, use_tqdm=False)
    obs.node_start("a", 1)
    obs.node_success("a", 0.5, "abc", {"rows": 1})
    obs.node_start("b", 2)
    obs.node_failure("b", "ValueError: bad row", 0.25)
    obs.workflow_complete(cumulative_cost_usd=0.125)

    trace, log, metadata = _files(obs)
    assert _types(trace) == [
        "workflow_start",
        "node_start",
        "node_success",
        "node_start",
        "node_failure",
        "workflow_complete",
    ]
    assert [e["seq"] for e in trace] == list(range(1, 7))
    assert trace[2]["output_hash"] == "abc" and trace[2]["output_summary"] == {"rows": 1}
    assert trace[4]["error"] == "ValueError: bad row"
    assert trace[5]["cumulative_cost_usd"] == 0.125
    assert trace[5]["node_times"] == {"a": 0.5, "b": 0.25}
    assert "NODE_FAILURE b" in log and "Workflow completed: step_02_done" in log
    assert metadata["status"] == "complete"
    assert (metadata["nodes_completed"], metadata["nodes_failed"]) == (1, 1)
    assert metadata["cumulative_cost_usd"] == 0.125
    assert metadata["events_written"] == 6
    assert obs.audit_trace_file.read_bytes() == obs.trace_file.read_bytes()
    assert obs.audit_log_file.read_text() == log
    assert "Workflow completed: step_02_done" in capsys.readouterr().out


def test_node_success_without_node_start_is_recorded(tmp_path: Path) -> None:
    obs = ExecutionObserver("step_03_bare", tmp_path, 1, use_tqdm=False)
    obs.node_success("lonely", 1.5, output_summary={"ok": True})
    assert obs.nodes_completed == 1
    obs.workflow_complete()

    trace, _, metadata = _files(obs)
    assert _types(trace) == ["workflow_start", "node_success", "workflow_complete"]
    assert trace[1]["node_id"] == "lonely" and trace[1]["node_index"] is None
    assert metadata["nodes_completed"] == 1 and metadata["node_times"] == {"lonely": 1.5}


def test_node_index_zero_is_kept(tmp_path: Path) -> None:
    obs = ExecutionObserver("step_03_zero", tmp_path, 1, use_tqdm=False)
    obs.node_start("first", 0)
    obs.node_success("first", 0.1)
    obs.workflow_complete()
    trace = list(read_trace(obs.trace_file))
    assert [e["node_index"] for e in trace if "node_id" in e] == [0, 0]


def test_error_then_complete_records_both_and_metadata_keeps_the_error(tmp_path: Path) -> None:
    obs = ExecutionObserver("step_05_fails", tmp_path, 2, use_tqdm=False)
    obs.node_start("a", 1)
    obs.node_failure("a", "boom", 0.1)
    obs.workflow_error("node a failed")

    trace, _, metadata = _files(obs)  # workflow_error drained and wrote the metadata
    assert _types(trace)[-1] == "workflow_error"
    assert (metadata["status"], metadata["error"]) == ("error", "node a failed")

    obs.workflow_complete()
    trace, log, metadata = _files(obs)
    assert _types(trace) == [
        "workflow_start",
        "node_start",
        "node_failure",
        "workflow_error",
        "workflow_complete",
    ]
    assert (metadata["status"], metadata["error"]) == ("error", "node a failed")
    assert metadata["nodes_failed"] == 1
    assert "WORKFLOW_ERROR" in log and "WORKFLOW_COMPLETE" in log
    assert "Workflow failed: step_05_fails" in log


def test_second_workflow_complete_does_nothing(tmp_path: Path) -> None:
    obs = ExecutionObserver("step_06_twice", tmp_path, 1, use_tqdm=False)
    obs.node_success("a", 0.1)
    obs.workflow_complete(cumulative_cost_usd=1.0)
    before = [p.read_bytes() for p in (obs.trace_file, obs.log_file)]
    metadata_file = obs.audit_dir / "metadata_06.json"
    metadata_before = metadata_file.read_text()

    obs.workflow_complete(cumulative_cost_usd=2.0)

    assert [p.read_bytes() for p in (obs.trace_file, obs.log_file)] == before
    assert metadata_file.read_text() == metadata_before
    assert _types(list(read_trace(obs.trace_file))).count("workflow_complete") == 1


def test_calls_after_workflow_complete_raise_bus_closed(tmp_path: Path) -> None:
    obs = ExecutionObserver("step_06_late", tmp_path, 1, use_tqdm=False)
    obs.workflow_complete()
    with pytest.raises(BusClosedError):
        obs.node_start("late", 1)
    with pytest.raises(BusClosedError):
        obs.node_success("late", 0.1)
    with pytest.raises(BusClosedError):
        obs.workflow_error("too late")
    assert (obs.nodes_completed, obs.nodes_failed, obs.node_times) == (0, 0, {})


def test_without_tqdm_node_lines_go_to_stdout_before_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    obs = ExecutionObserver("step_08_plain", tmp_path, 3, use_tqdm=False)
    obs.node_start("load", 1)
    obs.node_success("load", 1.25)
    obs.node_start("parse", 2)
    obs.node_failure("parse", "bad input", 0.5)
    obs.node_success("orphan", 0.125)
    obs.workflow_complete()

    out, err = capsys.readouterr()
    lines = out.splitlines()
    expected = [
        "  [1/3] load (1.25s)",
        "  [2/3] parse Error: bad input (0.50s)",
        "  orphan (0.12s)",
    ]
    positions = [lines.index(line) for line in expected]
    assert positions == sorted(positions)
    assert positions[-1] < lines.index(" Workflow completed: step_08_plain")
    assert lines.index("[RUN] Executing: step_08_plain") < positions[0]
    assert err == ""


def test_with_tqdm_progress_bar_is_a_view_of_the_writers_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    obs = ExecutionObserver("step_09_bar", tmp_path, 4)
    assert obs.use_tqdm is True
    bar = obs.progress_bar
    assert isinstance(bar, ProgressView)
    assert (bar.n, bar.total, bar.desc) == (0, 4, "Executing step_09_bar")
    obs.node_start("a", 1)
    obs.node_success("a", 0.1)
    obs.node_start("b", 2)
    obs.node_failure("b", "boom", 0.1)
    assert bar.n == 1  # as the seed's bar: a failure does not move it
    assert repr(bar) == "ProgressView(desc='Executing step_09_bar', n=1, total=4)"
    bar.write("a message from the runner")
    obs.workflow_complete()

    out, err = capsys.readouterr()
    assert "a message from the runner" in out
    assert "  [1/4] a" not in out  # the bar, not per-node lines
    assert "Executing step_09_bar" in err and "1/4" in err and "2/4" not in err
    assert re.search(r"PROGRESS Executing step_09_bar \|.*\| \[1/4\]", obs.log_file.read_text())


def test_thread_pool_of_8_workers_loses_nothing(tmp_path: Path) -> None:
    nodes = 5_000
    obs = ExecutionObserver("step_10_pool", tmp_path, nodes)

    def node(index: int) -> None:
        node_id = f"node_{index:05d}"
        obs.node_start(node_id, index)
        if index % 7 == 0:
            obs.node_failure(node_id, f"failure {index}", index / 1000)
        else:
            obs.node_success(node_id, index / 1000, obs.hash_output(index), {"i": index})

    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(node, i) for i in range(1, nodes + 1)]:
            future.result()
    failed = nodes // 7
    assert (obs.nodes_completed, obs.nodes_failed) == (nodes - failed, failed)
    assert len(obs.node_times) == nodes and len(obs.node_outputs) == nodes - failed
    assert obs.progress_bar is not None and obs.progress_bar.n == nodes - failed
    obs.workflow_complete()

    trace, _, metadata = _files(obs)
    assert_consistent_run(trace, metadata)
    assert len(trace) == 2 * nodes + 2
    assert [e["seq"] for e in trace] == list(range(1, len(trace) + 1))
    seen = [(e["event_type"], e.get("node_id")) for e in trace]
    assert len(set(seen)) == len(seen)  # every event exactly once
    ends = {e["node_id"]: e for e in trace if e["event_type"] in ("node_success", "node_failure")}
    assert len(ends) == nodes
    assert all(e["duration_seconds"] == obs.node_times[i] for i, e in ends.items())
    assert metadata["nodes_completed"] == nodes - failed
    assert metadata["nodes_failed"] == failed
    assert metadata["events_written"] == len(trace)
    assert metadata["events_lost"] == metadata["events_dropped"] == 0
    assert metadata["node_times"] == obs.node_times


# -- a synchronous DAG runner of the kind the seed served -----------------------------------


def _layered_dag(layers: int, width: int) -> dict[str, list[str]]:
    dag: dict[str, list[str]] = {}
    for layer in range(layers):
        for slot in range(width):
            deps = (
                [] if layer == 0 else [f"L{layer - 1}_{slot}", f"L{layer - 1}_{(slot + 1) % width}"]
            )
            dag[f"L{layer}_{slot}"] = deps
    return dag


def _work(node_id: str) -> dict[str, Any]:
    if node_id == "L2_3":
        raise RuntimeError(f"{node_id} could not parse its input")
    return {"node": node_id, "rows": len(node_id) * 10}


def _timed(node_id: str) -> tuple[float, dict[str, Any] | None, BaseException | None]:
    started = datetime.now()
    try:
        result, error = _work(node_id), None
    except RuntimeError as exc:
        result, error = None, exc
    return (datetime.now() - started).total_seconds(), result, error


def _run_dag(obs: ExecutionObserver, dag: dict[str, list[str]]) -> tuple[set[str], set[str]]:
    """Run ready nodes in batches on a pool; call the observer from this thread only."""
    pending, done, failed = dict(dag), set[str](), set[str]()
    index = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        while ready := [n for n, deps in pending.items() if all(d in done for d in deps)]:
            futures = {}
            for node_id in ready:
                del pending[node_id]
                index += 1
                obs.node_start(node_id, index)
                futures[pool.submit(_timed, node_id)] = node_id
            for future in as_completed(futures):
                node_id = futures[future]
                duration, result, error = future.result()
                if error is None:
                    assert result is not None
                    summary = {"rows": result["rows"]}
                    obs.node_success(node_id, duration, obs.hash_output(result), summary)
                    done.add(node_id)
                else:
                    obs.node_failure(node_id, str(error), duration)
                    failed.add(node_id)
    if failed:
        obs.workflow_error(f"{len(failed)} node(s) failed; {len(pending)} never ran")
    obs.workflow_complete(cumulative_cost_usd=0.5)
    return done, failed


_LOG_EVENT = re.compile(r"^\[(\d{4}-\d\d-\d\dT[^\]]+)\] ([A-Z_]+)(?: ([^ :|]+))?")


def test_dag_runner_gets_trace_log_and_metadata_that_agree(tmp_path: Path) -> None:
    dag = _layered_dag(layers=5, width=6)
    obs = ExecutionObserver("step_11_dag", tmp_path, len(dag), use_tqdm=False)
    done, failed = _run_dag(obs, dag)
    assert failed == {"L2_3"}
    assert len(done) == 24  # L3_2, L3_3, L4_1, L4_2 and L4_3 depend on L2_3: never run

    trace, log, metadata = _files(obs)
    assert_consistent_run(trace, metadata)
    # trace against the runner
    successes = {e["node_id"]: e for e in trace if e["event_type"] == "node_success"}
    failures = {e["node_id"]: e for e in trace if e["event_type"] == "node_failure"}
    assert set(successes) == done and set(failures) == failed
    for node_id, event in successes.items():
        assert event["output_hash"] == ExecutionObserver.hash_output(_work(node_id))
        assert event["output_summary"] == {"rows": len(node_id) * 10}
    starts = {e["node_id"]: e["node_index"] for e in trace if e["event_type"] == "node_start"}
    assert all(successes[n]["node_index"] == starts[n] for n in done)
    assert failures["L2_3"]["error"] == "L2_3 could not parse its input"
    assert _types(trace)[-2:] == ["workflow_error", "workflow_complete"]
    # log against trace: one line per event, same order, same timestamps
    logged = [m.groups() for line in log.splitlines() if (m := _LOG_EVENT.match(line))]
    logged = [entry for entry in logged if entry[1] != "PROGRESS"]
    assert logged == [(e["timestamp"], e["event_type"].upper(), e.get("node_id")) for e in trace]
    # metadata against trace and observer
    assert metadata["status"] == "error"
    assert metadata["error"] == "1 node(s) failed; 5 never ran"
    assert (metadata["nodes_completed"], metadata["nodes_failed"]) == (len(done), len(failed))
    assert (obs.nodes_completed, obs.nodes_failed) == (len(done), len(failed))
    ends = successes | failures
    assert metadata["node_times"] == {n: e["duration_seconds"] for n, e in ends.items()}
    assert metadata["node_times"] == obs.node_times
    assert metadata["cumulative_cost_usd"] == 0.5
    assert metadata["events_written"] == len(trace)
    assert metadata["trace_file"] == str(obs.audit_trace_file)
    assert metadata["log_file"] == str(obs.audit_log_file)


# -- a process that exits without completing --------------------------------------------------

_UNFINISHED = """
import shutil, sys
from tracebus.compat import ExecutionObserver

out, nodes, remove = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "remove"
obs = ExecutionObserver("step_07_unfinished", out, nodes, use_tqdm=False)
for i in range(1, nodes + 1):
    obs.node_start(f"n{i}", i)
    obs.node_success(f"n{i}", 0.01)
if remove:
    obs._run.flush()  # writer idle, as when a test's teardown removes its directory
    shutil.rmtree(out)
"""


def _run_unfinished(out: Path, nodes: int, remove: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _UNFINISHED, str(out), str(nodes), "remove" if remove else "keep"],
        capture_output=True,
        text=True,
        timeout=60,  # a hang guard only: the exit hook is bounded by exit_timeout (5s)
        check=False,
    )


def test_process_exiting_without_completion_flushes_its_trace(tmp_path: Path) -> None:
    nodes = 2_000
    result = _run_unfinished(tmp_path / "run", nodes, remove=False)
    assert (result.returncode, result.stderr) == (0, "")
    (trace_file,) = (tmp_path / "run" / "traces").glob("trace_step_07_*.jsonl")
    trace = list(read_trace(trace_file))
    assert len(trace) == 1 + 2 * nodes  # everything queued before exit, no terminal event
    assert _types(trace)[0] == "workflow_start"
    assert "workflow_complete" not in _types(trace)
    metadata = json.loads((tmp_path / "run/audit/step_07/metadata_07.json").read_text())
    assert metadata["status"] == "incomplete"
    assert metadata["nodes_completed"] == nodes
    assert metadata["events_written"] == len(trace)
    assert f"  [{nodes}/{nodes}] n{nodes} (0.01s)" in result.stdout.splitlines()


def test_process_whose_output_dir_was_removed_exits_quietly(tmp_path: Path) -> None:
    result = _run_unfinished(tmp_path / "run", 50, remove=True)
    assert (result.returncode, result.stderr) == (0, "")
    assert not (tmp_path / "run").exists()


# -- what the seed's users read: log details, summary paths, cost of a failed run -----------

_SEED_DETAILS = {
    "WORKFLOW_START": ["workflow_id", "pid", "timestamp", "total_nodes"],
    "NODE_START": ["epoch_seconds"],
    "NODE_SUCCESS": ["duration_seconds", "output_hash", "epoch_seconds", "output_summary"],
    "NODE_FAILURE": ["duration_seconds", "error", "epoch_seconds"],
    "WORKFLOW_ERROR": [
        "workflow_id", "error", "total_time_seconds", "nodes_completed", "nodes_failed",
        "epoch_seconds",
    ],
    "WORKFLOW_COMPLETE": [
        "workflow_id", "nodes_completed", "nodes_failed", "total_time_seconds",
        "cumulative_cost_usd", "trace_file", "log_file", "node_times", "epoch_seconds",
    ],
}  # fmt: skip


def _logged_details(log: str) -> dict[str, dict[str, Any]]:
    found = {}
    for line in log.splitlines():
        if (m := re.match(r"^\[[^\]]+\] ([A-Z_]+)[^|]* \| (\{.*\})$", line)) and m[1] != "PROGRESS":
            found[m[1]] = json.loads(m[2])
    return found


def test_log_details_start_with_the_seeds_fields_in_its_order(tmp_path: Path) -> None:
    obs = ExecutionObserver("step_12_details", tmp_path / "runs", 2, use_tqdm=False)
    obs.node_start("a", 1)
    obs.node_success("a", 0.5, "h", {"rows": 1})
    obs.node_start("b", 2)
    obs.node_failure("b", "boom", 0.25)
    obs.workflow_error("b failed")
    obs.workflow_complete(cumulative_cost_usd=0.5)

    details = _logged_details(obs.log_file.read_text())
    assert set(details) == set(_SEED_DETAILS)
    for event_type, fields in _SEED_DETAILS.items():
        assert list(details[event_type])[: len(fields)] == fields, event_type
    trace = list(read_trace(obs.trace_file))
    start = details["WORKFLOW_START"]
    assert (start["workflow_id"], start["pid"], start["total_nodes"]) == (
        "step_12_details",
        os.getpid(),
        2,
    )
    assert start["timestamp"] == trace[0]["timestamp"]
    assert details["WORKFLOW_ERROR"]["workflow_id"] == "step_12_details"
    complete = details["WORKFLOW_COMPLETE"]
    assert complete["workflow_id"] == "step_12_details"
    assert complete["trace_file"] == str(obs.trace_file)
    assert (complete["nodes_completed"], complete["nodes_failed"]) == (1, 1)
    assert obs.audit_log_file.read_text() == obs.log_file.read_text()


@pytest.mark.parametrize("absolute", [True, False])
def test_summaries_name_the_files_from_the_output_directorys_parent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    absolute: bool,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "nested" / "runs" if absolute else Path("nested/runs")
    obs = ExecutionObserver("step_13_paths", str(out), 1, use_tqdm=False)
    obs.workflow_error("stopped")
    obs.workflow_complete()

    shown = capsys.readouterr().out.splitlines()
    trace = f"runs/traces/{obs.trace_file.name}"
    assert f" Trace: {trace}" in shown
    assert f" Trace file: {trace}" in shown
    assert f" Log file: runs/logs/{obs.log_file.name}" in shown
    assert f"[DIR] Output: {tmp_path / 'nested' / 'runs'}" in shown


def test_failed_run_reporting_no_cost_says_its_cost_is_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = (
        "import sys\n"
        "from tracebus.compat import ExecutionObserver\n"
        "obs = ExecutionObserver('step_14_costly', sys.argv[1], 2, use_tqdm=False)\n"
        "obs.node_start('ask', 1)\n"
        "obs.node_failure('ask', 'rate limited', 0.5)\n"
        "obs.workflow_error('ask failed')\n"
        "sys.exit(1)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    metadata = json.loads((tmp_path / "audit/step_14/metadata_14.json").read_text())
    assert (metadata["status"], metadata["error"]) == ("error", "ask failed")
    assert metadata["cumulative_cost_usd"] is None
    # and so do the read-back tools
    assert read_run(tmp_path).cost_usd is None
    assert main(["summary", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cost_usd"] is None
    assert main(["summary", str(tmp_path)]) == 0
    assert "  cost           unknown" in capsys.readouterr().out.splitlines()


def test_failed_run_then_completed_with_a_cost_keeps_that_cost(tmp_path: Path) -> None:
    obs = ExecutionObserver("step_14_reported", tmp_path, 1, use_tqdm=False)
    obs.node_failure("ask", "rate limited", 0.5)
    obs.workflow_error("ask failed")
    _, _, metadata = _files(obs)
    assert metadata["cumulative_cost_usd"] is None
    obs.workflow_complete(cumulative_cost_usd=0.0125)
    _, _, metadata = _files(obs)
    assert (metadata["status"], metadata["cumulative_cost_usd"]) == ("error", 0.0125)


def test_node_blocks_nest_count_and_record_usage_like_the_seeds_calls(tmp_path: Path) -> None:
    obs = ExecutionObserver("step_09_nested", tmp_path, 3, use_tqdm=False)
    seen: list[str | None] = []
    with obs.node("agent", 0) as agent:
        seen.append(current_node())
        with obs.node("search", 1, depends_on=["plan"]) as search:
            seen.append(current_node())
            search.usage("small-model", input_tokens=120, output_tokens=30, cost_usd=0.002)
            search.output({"hits": 3})
        obs.usage("big-model", 800, 200, 0.05)
        agent.cost(0.25)
        with pytest.raises(ValueError, match="no answer"), obs.node("answer", 2):
            raise ValueError("no answer")
    seen.append(current_node())
    assert seen == ["agent", "search", None]
    assert (obs.nodes_completed, obs.nodes_failed) == (2, 1)
    assert set(obs.node_times) == {"agent", "search", "answer"}
    assert obs.node_outputs == {"search": {"hits": 3}}
    assert obs.current_node_id == "answer"
    obs.workflow_complete()

    trace, log, metadata = _files(obs)
    starts = {e["node_id"]: e for e in trace if e["event_type"] == "node_start"}
    assert "parent_id" not in starts["agent"]
    assert starts["search"]["parent_id"] == "agent"
    assert starts["search"]["depends_on"] == ["plan"]
    assert starts["answer"]["parent_id"] == "agent"
    usage = [(e["node_id"], e["model"]) for e in trace if e["event_type"] == "usage"]
    assert usage == [("search", "small-model"), ("agent", "big-model")]
    ends = {e["node_id"]: e for e in trace if e["event_type"] in ("node_success", "node_failure")}
    assert ends["agent"]["cost_usd"] == 0.25
    assert ends["search"]["output_hash"] == ExecutionObserver.hash_output({"hits": 3})
    assert ends["answer"]["error"] == "ValueError: no answer"
    assert "NODE_FAILURE answer" in log
    assert (metadata["nodes_completed"], metadata["nodes_failed"]) == (2, 1)
    assert metadata["usage_by_model"]["small-model"]["input_tokens"] == 120
    assert metadata["usage_by_model"]["big-model"]["output_tokens"] == 200
