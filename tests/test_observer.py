from __future__ import annotations

import re
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import tracebus
from tests.conftest import Quiet, assert_consistent_run, metadata_of, trace_of

pytestmark = pytest.mark.anyio


async def test_run_writes_trace_log_and_metadata_in_the_seed_layout(
    out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with tracebus.Observer("step_04_populate", out, total_nodes=3, progress=False) as obs:
        async with obs.node("fetch", 0) as node:
            node.output({"rows": 3})
            node.cost(0.0012)
        await obs.node_start("parse", 1)
        await obs.node_success("parse", duration_seconds=0.5, output_summary={"rows": 3})
        await obs.node_start("load", 2)
        await obs.node_failure("load", error="timeout", duration_seconds=2.0)

    assert obs.trace_file.parent == out / "traces"
    assert re.fullmatch(r"trace_step_04_\d{8}_\d{6}\.jsonl", obs.trace_file.name)
    assert re.fullmatch(r"execution_step_04_populate_\d{8}_\d{6}\.log", obs.log_file.name)
    assert obs.audit_dir == out / "audit" / "step_04"
    audit_trace = obs.audit_dir / "trace_04.jsonl"
    assert audit_trace.read_bytes() == obs.trace_file.read_bytes()
    assert (obs.audit_dir / "log_04.log").read_bytes() == obs.log_file.read_bytes()

    trace = trace_of(obs.trace_file)
    assert [e["event_type"] for e in trace] == [
        "workflow_start",
        "node_start",
        "node_success",
        "node_start",
        "node_success",
        "node_start",
        "node_failure",
        "workflow_complete",
    ]
    for event in trace:
        assert event["run_id"] == obs.run_id
        assert event["workflow_id"] == "step_04_populate"
        assert event["schema_version"] == tracebus.SCHEMA_VERSION
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", event["timestamp"])
    fetch = trace[2]
    assert fetch["node_index"] == 0  # index 0 is kept
    assert fetch["output_hash"] == tracebus.hash_output({"rows": 3})
    assert fetch["output_summary"] == {"rows": 3}
    assert fetch["cost_usd"] == 0.0012
    assert trace[6]["error"] == "timeout" and trace[6]["node_index"] == 2
    done = trace[-1]
    assert (done["nodes_completed"], done["nodes_failed"]) == (2, 1)
    assert done["cumulative_cost_usd"] == 0.0012

    metadata = metadata_of(obs.metadata_file)
    assert metadata == obs.metadata
    assert_consistent_run(trace, metadata)
    assert metadata["status"] == "complete"
    assert metadata["run_id"] == obs.run_id
    assert metadata["step_number"] == "04"
    assert metadata["node_costs"] == {"fetch": 0.0012}
    assert set(metadata["node_times"]) == {"fetch", "parse", "load"}
    assert metadata["events_dropped"] == 0

    log = obs.log_file.read_text()
    assert "[RUN] Executing: step_04_populate" in log
    assert " Nodes executed: 2/3" in log and " Nodes failed: 1" in log
    assert re.search(r"^\[[^\]]+\] NODE_FAILURE load \| \{.*\"error\":\"timeout\"", log, re.M)
    stdout = capsys.readouterr().out
    assert "[RUN] Executing: step_04_populate" in stdout
    assert f" Trace file: {obs.trace_file.relative_to(out.parent)}" in stdout


async def test_node_block_that_raises_records_failure_and_reraises(out: Path, quiet: Quiet) -> None:
    async with quiet.Observer("wf", out, total_nodes=1) as obs:
        with pytest.raises(KeyError):
            async with obs.node("n", 0):
                raise KeyError("missing")
    failure = [e for e in trace_of(obs.trace_file) if e["event_type"] == "node_failure"]
    assert len(failure) == 1
    assert failure[0]["error"] == "KeyError: 'missing'"


async def test_block_that_raises_records_workflow_error(out: Path, quiet: Quiet) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with quiet.Observer("wf", out) as obs:
            await obs.node_start("a", 0)
            raise RuntimeError("boom")
    trace = trace_of(obs.trace_file)
    assert trace[-1]["event_type"] == "workflow_error"
    assert trace[-1]["error"] == "RuntimeError: boom"
    assert obs.metadata is not None
    assert obs.metadata["status"] == "error"
    assert obs.metadata["error"] == "RuntimeError: boom"


async def test_explicit_completion_is_not_doubled_and_reports_given_cost(
    out: Path, quiet: Quiet
) -> None:
    async with quiet.Observer("wf", out) as obs:
        await obs.node_success("a", 1.0, cost_usd=0.5)
        await obs.workflow_complete(cumulative_cost_usd=2.0)
    trace = trace_of(obs.trace_file)
    assert [e["event_type"] for e in trace].count("workflow_complete") == 1
    assert trace[-1]["cumulative_cost_usd"] == 2.0
    assert obs.metadata is not None and obs.metadata["cumulative_cost_usd"] == 2.0


async def test_skips_retries_and_notes_are_recorded(out: Path, quiet: Quiet) -> None:
    async with quiet.Observer("wf", out, total_nodes=2) as obs:
        await obs.node_start("a", 0)
        await obs.node_retry("a", attempt=1, error="429", delay_seconds=0.5)
        await obs.node_success("a", 1.0)
        await obs.node_skipped("b", reason="upstream failed")
        await obs.note("tokens used", node_id="a", tokens=1234)
    trace = trace_of(obs.trace_file)
    retry, skipped, note = trace[2], trace[4], trace[5]
    assert (retry["attempt"], retry["error"], retry["node_index"]) == (1, "429", 0)
    assert skipped["reason"] == "upstream failed"
    assert note["message"] == "tokens used" and note["fields"] == {"tokens": 1234}
    assert obs.metadata is not None
    assert (obs.metadata["nodes_skipped"], obs.metadata["nodes_retried"]) == (1, 1)
    assert "NOTE a: tokens used" in obs.log_file.read_text()


async def test_unencodable_output_summary_is_stored_as_flagged_repr(
    out: Path, quiet: Quiet
) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque 7>"

    async with quiet.Observer("wf", out) as obs:
        await obs.node_success("a", 0.1, output_summary={"obj": Opaque(), "n": 1})
        await obs.node_success("b", 0.1, output_summary={(1, 2): "tuple key"})
        cyclic: dict[str, object] = {}
        cyclic["self"] = cyclic
        await obs.node_success("c", 0.1, output_summary=cyclic)
    trace = trace_of(obs.trace_file)
    assert trace[1]["output_summary"] == {"obj": {"$repr": "<Opaque 7>"}, "n": 1}
    assert trace[2]["output_summary"] == {"$repr": "{(1, 2): 'tuple key'}"}
    assert trace[3]["output_summary"] == {"$repr": "{'self': {...}}"}
    assert obs.metadata is not None and obs.metadata["nodes_completed"] == 3


async def test_thousand_tasks_and_eight_threads_lose_nothing(out: Path, quiet: Quiet) -> None:
    tasks, threads, per_thread = 1_000, 8, 250
    async with quiet.Observer(
        "wf",
        out,
        total_nodes=tasks + threads * per_thread,
        capacity=512,
    ) as obs:
        producer = obs.threads

        def thread_nodes(worker: int) -> None:
            for i in range(per_thread):
                node_id = f"t{worker}-{i}"
                producer.node_start(node_id, i)
                producer.node_success(node_id, 0.0)

        async def task_node(i: int) -> None:
            async with obs.node(f"a{i}", i):
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            for worker in range(threads):
                tg.start_soon(anyio.to_thread.run_sync, thread_nodes, worker)
            for i in range(tasks):
                tg.start_soon(task_node, i)

    trace = trace_of(obs.trace_file)
    assert obs.metadata is not None
    assert_consistent_run(trace, obs.metadata)
    ended = Counter(e["node_id"] for e in trace if e["event_type"] == "node_success")
    assert len(ended) == tasks + threads * per_thread
    assert set(ended.values()) == {1}
    # a thread's own events keep their order
    for worker in range(threads):
        seqs = [e["seq"] for e in trace if e.get("node_id", "").startswith(f"t{worker}-")]
        assert seqs == sorted(seqs)


async def test_cancelled_run_leaves_complete_readable_files(out: Path, quiet: Quiet) -> None:
    started = anyio.Event()
    count = 0

    async def node(obs: tracebus.Observer, i: int) -> None:
        nonlocal count
        async with obs.node(f"n{i}", i):
            count += 1
            if count == 20:
                started.set()
            await anyio.sleep_forever()

    with anyio.CancelScope() as scope:
        async with quiet.Observer("wf", out) as obs:
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(node, obs, i)
                await started.wait()
                scope.cancel()
    trace = trace_of(obs.trace_file)
    assert obs.metadata is not None
    assert_consistent_run(trace, obs.metadata)
    assert trace[-1]["event_type"] == "workflow_error"
    assert trace[-1]["error"] == "cancelled"
    failures = [e for e in trace if e["event_type"] == "node_failure"]
    assert len(failures) == 20 and {e["error"] for e in failures} == {"cancelled"}
    assert obs.metadata["status"] == "error"


async def test_progress_bar_text_reaches_both_logs_without_ansi(
    out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with tracebus.Observer("wf", out, total_nodes=2, progress=True) as obs:
        async with obs.node("a", 0):
            pass
        async with obs.node("b", 1):
            pass
    log = obs.log_file.read_text()
    assert "\x1b" not in log
    progress = [line for line in log.splitlines() if " PROGRESS " in line]
    assert progress, log
    assert progress[-1].endswith("[2/2]") or "[2/2]" in progress[-1]
    assert (obs.audit_dir / "log_00.log").read_text() == log
    assert "Executing wf" in capsys.readouterr().err


async def test_progress_off_prints_no_bar(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with tracebus.Observer("wf", out, total_nodes=1, progress=False) as obs:
        await obs.node_success("a", 0.1)
    assert capsys.readouterr().err == ""
    assert " PROGRESS " not in obs.log_file.read_text()


@pytest.mark.parametrize(
    "bad", ["", "../escape", "a/b", ".hidden", "-rf", "a..b", "x" * 201, "tab\there", "nul\x00"]
)
async def test_unsafe_workflow_id_is_rejected_before_anything_is_written(
    out: Path, bad: str
) -> None:
    with pytest.raises(ValueError, match="invalid workflow_id"):
        tracebus.Observer(bad, out)
    assert not out.exists()


async def test_workflow_id_with_spaces_and_non_ascii_letters_names_the_files(out: Path) -> None:
    async with tracebus.Observer("step_07 análisis del día", out, 1, progress=False) as obs:
        await obs.node_start("first node", 1)
        await obs.node_success("first node", 0.5)
    assert obs.log_file.parent == out / "logs"
    assert obs.log_file.name.startswith("execution_step_07 análisis del día_")
    assert obs.metadata is not None and obs.metadata["status"] == "complete"
    trace = list(tracebus.read_trace(obs.trace_file))
    assert {e["workflow_id"] for e in trace} == {"step_07 análisis del día"}
    assert trace[-1]["nodes_completed"] == 1


def test_non_str_workflow_id_is_rejected(out: Path) -> None:
    with pytest.raises(tracebus.InvalidIdError, match="must be a str"):
        tracebus.Observer(42, out)  # type: ignore[arg-type]


async def test_methods_before_entering_say_so(out: Path) -> None:
    obs = tracebus.Observer("wf", out)
    with pytest.raises(RuntimeError, match="not open"):
        await obs.node_start("a", 0)


async def test_emit_after_close_raises(out: Path, quiet: Quiet) -> None:
    async with quiet.Observer("wf", out) as obs:
        pass
    with pytest.raises(tracebus.BusClosedError, match="closed"):
        await obs.node_start("late", 0)


async def test_two_runs_in_the_same_second_get_separate_files(out: Path, quiet: Quiet) -> None:
    async def run(tag: str) -> tracebus.Observer:
        async with quiet.Observer("step_01_x", out) as obs:
            for i in range(50):
                await obs.node_success(f"{tag}{i}", 0.0)
                await anyio.lowlevel.checkpoint()
        return obs

    results: list[tracebus.Observer] = []

    async def keep(tag: str) -> None:
        results.append(await run(tag))

    async with anyio.create_task_group() as tg:
        tg.start_soon(keep, "a")
        tg.start_soon(keep, "b")
    first, second = results
    assert first.trace_file != second.trace_file
    assert first.log_file != second.log_file
    for obs in results:
        trace = trace_of(obs.trace_file)
        assert {e["run_id"] for e in trace} == {obs.run_id}
        assert len(trace) == 52


async def test_rerun_moves_previous_audit_files_aside(out: Path, quiet: Quiet) -> None:
    async with quiet.Observer("step_02_x", out) as first:
        await first.node_success("a", 0.0)
    async with quiet.Observer("step_02_x", out) as second:
        await second.node_success("b", 0.0)
    audit = out / "audit" / "step_02"
    current = trace_of(audit / "trace_02.jsonl")
    assert {e["run_id"] for e in current} == {second.run_id}
    previous = list((audit / "previous").glob("*/trace_02.jsonl"))
    assert len(previous) == 1
    assert {e["run_id"] for e in trace_of(previous[0])} == {first.run_id}
    assert len(list((audit / "previous").glob("*/metadata_02.json"))) == 1


async def test_drop_policy_counts_drops_and_keeps_lifecycle_events(out: Path, quiet: Quiet) -> None:
    async with quiet.Observer("wf", out, capacity=8, overflow="drop") as obs:
        for i in range(200):  # no await that yields: the writer cannot drain meanwhile
            obs.bus.emit_nowait(obs.events.note(f"n{i}", None, {}))
        dropped = obs.statistics().dropped
        await obs.node_failure("x", error="kept", duration_seconds=0.0)
    assert dropped > 0
    trace = trace_of(obs.trace_file)
    assert obs.metadata is not None
    assert obs.metadata["events_dropped"] == dropped
    assert len(trace) == obs.metadata["events_written"]
    assert sum(e["event_type"] == "note" for e in trace) == 200 - dropped
    assert [e["event_type"] for e in trace][-2:] == ["node_failure", "workflow_complete"]
    assert f"Events dropped: {dropped}" in obs.log_file.read_text()


def test_threads_property_is_only_for_open_observers(out: Path) -> None:
    obs = tracebus.Observer("wf", out)
    with pytest.raises(RuntimeError, match="not open"):
        obs.threads.node_start("a", 0)


_TWO_RUNS = """
import sys, tracebus
for _ in range(2):  # the second run moves the first one's audit files into previous/
    with tracebus.SyncObserver("step_11_modes", sys.argv[1], 1, console=None) as obs:
        obs.node_success("a", 0.1)
"""


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_every_file_and_directory_of_a_run_follows_the_umask(out: Path, umask: int) -> None:
    subprocess.run([sys.executable, "-c", _TWO_RUNS, str(out)], umask=umask, check=True, timeout=60)
    modes = {
        str(path.relative_to(out)): stat.S_IMODE(path.stat().st_mode) for path in out.rglob("*")
    }
    assert "audit/step_11/metadata_11.json" in modes
    assert any("/previous/" in name for name in modes)
    assert len([name for name in modes if name.startswith("traces/")]) == 2
    wrong = {
        name: oct(mode)
        for name, mode in modes.items()
        if mode != (0o777 if (out / name).is_dir() else 0o666) & ~umask
    }
    assert wrong == {}


@pytest.mark.parametrize(("progress", "shown"), [(True, "[3/4]"), ("succeeded", "[2/4]")])
async def test_progress_bar_counts_finished_or_only_succeeded_nodes(
    out: Path, capsys: pytest.CaptureFixture[str], progress: Any, shown: str
) -> None:
    async with tracebus.Observer("step_12_bar", out, 4, progress=progress, console=None) as obs:
        await obs.node_success("a", 0.1)
        await obs.node_failure("b", "boom", 0.1)
        await obs.node_success("c", 0.1)
    last = [line for line in obs.log_file.read_text().splitlines() if " PROGRESS " in line][-1]
    assert f"| {shown}" in last
    assert f"| {shown}" in capsys.readouterr().err


def test_a_progress_that_is_no_option_is_refused(out: Path) -> None:
    with pytest.raises(
        ValueError, match=r"^progress must be True, False or 'succeeded', got 'yes'$"
    ):
        tracebus.Observer("step_12_bad", out, progress="yes")  # type: ignore[arg-type]
    assert not out.exists()


async def test_failed_run_costs_what_its_nodes_reported_or_is_unknown(out: Path) -> None:
    async with tracebus.Observer("step_13_paid", out / "paid", 2, progress=False) as paid:
        await paid.node_success("ask", 0.5, cost_usd=0.25)
        await paid.workflow_error("later step failed")
    assert paid.metadata is not None and paid.metadata["cumulative_cost_usd"] == 0.25

    async with tracebus.Observer("step_13_unpaid", out / "unpaid", 2, progress=False) as unpaid:
        await unpaid.node_failure("ask", "rate limited", 0.5)
        await unpaid.workflow_error("ask failed")
        await unpaid.workflow_complete()  # nothing reported: the sum of no costs is no figure
    assert unpaid.metadata is not None and unpaid.metadata["cumulative_cost_usd"] is None
    assert trace_of(unpaid.trace_file)[-1]["cumulative_cost_usd"] is None
    assert tracebus.read_run(out / "unpaid").cost_usd is None


@pytest.mark.parametrize("flavour", [tracebus.Observer, tracebus.SyncObserver])
def test_an_option_no_flavour_takes_is_refused_by_name(out: Path, flavour: Any) -> None:
    with pytest.raises(TypeError) as raised:
        flavour("wf", out, capcity=10)
    assert str(raised.value) == f"{flavour.__name__}() got an unexpected keyword argument 'capcity'"
    assert not out.exists()


def test_the_thread_side_options_are_refused_by_the_async_observer(out: Path) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'exit_timeout'"):
        tracebus.Observer("wf", out, exit_timeout=1.0)  # type: ignore[call-arg]


async def test_a_second_writer_of_one_run_is_refused_at_entry(out: Path) -> None:
    async with Quiet.Observer("wf", out, run_id="r1") as first:
        with pytest.raises(tracebus.RunLockedError, match="is writing this run"):
            async with Quiet.Observer("wf", out, run_id="r1"):
                pass
        await first.note("still writing")
    assert [e["event_type"] for e in trace_of(first.trace_file)] == [
        "workflow_start",
        "note",
        "workflow_complete",
    ]
    assert not (out / ".tracebus").exists()
    assert list((out / "traces").iterdir()) == [first.trace_file]  # the refused one made none


async def test_the_trace_and_the_metadata_start_the_run_at_the_same_moment(
    out: Path, quiet: Quiet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However long entering takes (here making the files takes 0.3 s), the run starts when
    its files' names say: the start event's time is the metadata's start, and the wall time
    a reader takes from the trace is the metadata's."""
    import time as clock
    from datetime import datetime

    from tracebus._layout import create_layout
    from tracebus._tools._runs import find_runs

    def slow(*args: Any) -> Any:
        clock.sleep(0.3)
        return create_layout(*args)

    monkeypatch.setattr("tracebus._run_parts.create_layout", slow)
    async with quiet.Observer("step_06_start", out) as obs:
        await obs.node_success("a", 0.1)
    trace = trace_of(obs.trace_file)
    metadata = metadata_of(obs.metadata_file)
    start, end = trace[0]["epoch_seconds"], trace[-1]["epoch_seconds"]
    assert datetime.fromisoformat(metadata["start_time"]).timestamp() == pytest.approx(
        start, abs=1e-6
    )
    assert datetime.fromtimestamp(start).strftime("%Y%m%d_%H%M%S") in obs.trace_file.name
    assert metadata["total_time_seconds"] == pytest.approx(end - start, abs=1e-6)
    assert end - start >= 0.3  # the entering is part of the run
    (from_metadata,) = find_runs([out])
    obs.metadata_file.unlink()
    (from_trace,) = find_runs([out])
    assert (from_metadata.source, from_trace.source) == ("metadata", "trace")
    assert from_trace.wall_s == pytest.approx(from_metadata.wall_s, abs=1e-6)
