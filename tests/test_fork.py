"""Processes that fork: a child forked from a process holding an observer exits normally,
writes nothing to the parent's run, and may open an observer of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.conftest import trace_of

#: A parent that holds an observer while a fork-started ProcessPoolExecutor runs: plain
#: work, calls on the parent's observer from the children, and a child's own observer.
SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, os, sys
    from concurrent.futures import ProcessPoolExecutor

    import tracebus
    from tracebus.compat import ExecutionObserver

    flavour, out = sys.argv[1], sys.argv[2]


    def open_parent():
        if flavour == "sync":
            return tracebus.SyncObserver("parent", out, 1, progress=False, console=None)
        if flavour == "compat":
            return ExecutionObserver("parent", out, 1, use_tqdm=False)
        return tracebus.connect_sync(sys.argv[3], "parent", 1)


    def close_parent(obs):
        if flavour == "compat":
            obs.workflow_complete()
        else:
            obs.close()


    def work(i):
        return os.getpid()


    def call_the_parent(i):
        try:
            OBSERVER.node_start(f"from-child-{i}", i)
        except tracebus.BusClosedError as exc:
            return str(exc)
        return "accepted"


    def own_observer(i):
        with tracebus.SyncObserver("child", out + "-child", progress=False, console=None) as obs:
            obs.node_success(f"child-node-{i}", 0.1)
        return str(obs.trace_file)


    OBSERVER = open_parent()
    OBSERVER.node_start("parent-node", 0)
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    pids = sorted(set(pool.map(work, range(8))))
    refusals = list(pool.map(call_the_parent, range(2)))
    child_trace = pool.submit(own_observer, 0).result()
    pool.shutdown(wait=True)
    OBSERVER.node_success("parent-node", 0.1)
    close_parent(OBSERVER)
    print(json.dumps({"pids": pids, "refusals": refusals, "child_trace": child_trace}))
    """
)


def run_forking_parent(flavour: str, out: Path, *extra: str) -> dict[str, Any]:
    """Run SCRIPT; fail (not hang) if a child or the parent hangs at exit."""
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, flavour, str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its pool's children too can be stopped if they hang
    )
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError("the forking parent or one of its children hung at exit") from None
    assert process.returncode == 0, stderr
    report: dict[str, Any] = json.loads(stdout.splitlines()[-1])
    assert report["pids"], report
    for refusal in report["refusals"]:
        assert "forked" in refusal and "open an observer of its own" in refusal, refusal
    child = trace_of(Path(report["child_trace"]))
    assert [e["event_type"] for e in child] == [
        "workflow_start",
        "node_success",
        "workflow_complete",
    ]
    return report


def _node_ids(trace: list[dict[str, Any]]) -> list[str]:
    return [e["node_id"] for e in trace if "node_id" in e]


def test_a_sync_observer_survives_a_fork_pool(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    run_forking_parent("sync", out)
    (trace_file,) = out.glob("traces/*.jsonl")
    trace = trace_of(trace_file)
    assert _node_ids(trace) == ["parent-node", "parent-node"]
    assert trace[-1]["event_type"] == "workflow_complete"


def test_a_compat_observer_survives_a_fork_pool(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    run_forking_parent("compat", out)
    (trace_file,) = out.glob("traces/*.jsonl")
    trace = trace_of(trace_file)
    assert _node_ids(trace) == ["parent-node", "parent-node"]
    assert trace[-1]["event_type"] == "workflow_complete"
