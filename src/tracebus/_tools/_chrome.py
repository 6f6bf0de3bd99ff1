"""Chrome Trace Event Format (JSON object form), for ui.perfetto.dev and chrome://tracing.

The workflow is a complete (``X``) event on a track of its own spanning the whole run; each
node attempt is an ``X`` event on its lane (one thread per lane, so none overlap); a failed
attempt carries the ``failed`` category, the ``terrible`` colour and its error; notes,
retries, skips and a workflow error are instant (``i``) events. Times are microseconds from
the run's start.
"""

from __future__ import annotations

from typing import Any

from ._lanes import Bar, Lanes, lay_out
from ._record import RunRecord

_WORKFLOW_TID = 0
_COLOURS = {"failed": "terrible", "running": "yellow", "skipped": "grey"}


def chrome_trace(run: RunRecord) -> dict[str, Any]:
    """The run as a Chrome trace: ``{"traceEvents": [...], ...}``."""
    lanes = lay_out(run)
    pid = _pid(run)
    events: list[dict[str, Any]] = [
        _meta(pid, _WORKFLOW_TID, "process_name", {"name": run.workflow_id or "workflow"}),
        _meta(pid, _WORKFLOW_TID, "thread_name", {"name": "workflow"}),
        _meta(pid, _WORKFLOW_TID, "thread_sort_index", {"sort_index": 0}),
    ]
    for lane in range(lanes.count):
        tid = lane + 1
        events.append(_meta(pid, tid, "thread_name", {"name": f"lane {lane + 1}"}))
        events.append(_meta(pid, tid, "thread_sort_index", {"sort_index": tid}))
    workflow: dict[str, Any] = {
        "name": run.workflow_id or "workflow",
        "cat": "workflow",
        "ph": "X",
        "ts": 0,
        "dur": lanes.span_us,
        "pid": pid,
        "tid": _WORKFLOW_TID,
        "args": {
            "run_id": run.run_id,
            "status": run.status,
            "total_nodes": run.total_nodes,
            **run.counts._asdict(),
            "cost_usd": run.cost_usd,
        },
    }
    if run.error is not None:
        workflow["args"]["error"] = run.error
    if run.status != "complete" or run.failed_nodes:
        workflow["cname"] = "terrible"
    events.append(workflow)
    events.extend(_node_event(bar, pid) for bar in lanes.bars)
    events.extend(_instants(run, lanes, pid))
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "workflow_id": run.workflow_id,
            "run_id": run.run_id,
            "status": run.status,
            "trace_file": str(run.trace_file),
            "started_epoch_seconds": run.started,
        },
    }


def _node_event(bar: Bar, pid: int) -> dict[str, Any]:
    attempt, node = bar.attempt, bar.node
    args: dict[str, Any] = {"status": attempt.status, "attempt": attempt.number}
    if node.node_index is not None:
        args["node_index"] = node.node_index
    if attempt.duration_seconds is not None:
        args["duration_seconds"] = attempt.duration_seconds
    if attempt.cost_usd:
        args["cost_usd"] = attempt.cost_usd
    if attempt.output_hash is not None:
        args["output_hash"] = attempt.output_hash
    if attempt.output_summary is not None:
        args["output_summary"] = attempt.output_summary
    if attempt.error is not None:
        args["error"] = attempt.error
    event: dict[str, Any] = {
        "name": node.node_id,
        "cat": f"node,{attempt.status}",
        "ph": "X",
        "ts": bar.start_us,
        "dur": bar.end_us - bar.start_us,
        "pid": pid,
        "tid": bar.lane + 1,
        "args": args,
    }
    colour = _COLOURS.get(attempt.status)
    if colour is not None:
        event["cname"] = colour
    return event


def _instants(run: RunRecord, lanes: Lanes, pid: int) -> list[dict[str, Any]]:
    bars_of: dict[str, list[Bar]] = {}
    for bar in lanes.bars:
        bars_of.setdefault(bar.node.node_id, []).append(bar)

    def instant(
        name: str, category: str, epoch: Any, node_id: Any, args: dict[str, Any]
    ) -> dict[str, Any]:
        ts = lanes.offset_us(epoch) if isinstance(epoch, int | float) else 0
        tid, scope = _WORKFLOW_TID, "g"
        # on the lane of that node's attempt running at that moment, if there is one
        for bar in bars_of.get(str(node_id), ()) if node_id is not None else ():
            if bar.start_us <= ts <= bar.end_us:
                tid, scope = bar.lane + 1, "t"
                break
        return {
            "name": name,
            "cat": category,
            "ph": "i",
            "s": scope,
            "ts": ts,
            "pid": pid,
            "tid": tid,
            "args": args,
        }

    instants: list[dict[str, Any]] = []
    for note in run.notes:
        fields = note.get("fields")
        args = dict(fields) if isinstance(fields, dict) else {}
        node_id = note.get("node_id")
        if node_id is not None:
            args["node_id"] = node_id
        name = f"note: {note.get('message', '')}"
        instants.append(instant(name, "note", note.get("epoch_seconds"), node_id, args))
    for node in run.nodes:
        for retry in node.retries:
            args = {k: retry[k] for k in ("attempt", "error", "delay_seconds") if k in retry}
            epoch = retry.get("epoch_seconds")
            instants.append(instant(f"retry {node.node_id}", "retry", epoch, node.node_id, args))
        for attempt in node.attempts:
            if attempt.status == "skipped":
                reason = attempt.fields.get("reason")
                args = {"reason": reason} if reason else {}
                name = f"skipped {node.node_id}"
                instants.append(instant(name, "skip", attempt.start, node.node_id, args))
    if run.error is not None:
        error = instant("workflow error", "workflow,failed", run.ended, None, {"error": run.error})
        error["cname"] = "terrible"
        instants.append(error)
    return instants


def _pid(run: RunRecord) -> int:
    for event in run.events[:1]:
        pid = event.get("pid")
        if isinstance(pid, int) and not isinstance(pid, bool):
            return pid
    return 1


def _meta(pid: int, tid: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": args}
