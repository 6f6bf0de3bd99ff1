"""Chrome Trace Event Format (JSON object form), for ui.perfetto.dev and chrome://tracing.

The workflow is a complete (``X``) event on a track of its own spanning the whole run; each
node attempt is an ``X`` event on its lane (one thread per lane); a failed attempt carries
the ``failed`` category, the ``terrible`` colour and its error; notes, retries, skips and a
workflow error are instant (``i``) events. Times are microseconds from the run's start.

A child node's attempt is on its parent's lane, nested inside the parent's event, unless a
sibling running at the same time holds that place (then it takes a lane of its own); so
events on a lane are disjoint or nested, as viewers draw them. Each ``depends_on`` is a
flow (an ``s`` event on the upstream node's attempt, an ``f`` event binding to the start
of the dependent one), drawn as an arrow. The events are written as they are made, from
the run's attempt table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import msgspec

from ._attempts import STATUS_CODES, AttemptTable, Lanes, lay_out
from ._lines import TraceLine
from ._scan import RunFacts

_WORKFLOW_TID = 0
_COLOURS = {"failed": "terrible", "running": "yellow", "skipped": "grey"}
_encode = msgspec.json.Encoder().encode
_BATCH = 4096


def write_chrome_trace(facts: RunFacts, table: AttemptTable, output: BinaryIO) -> int:
    """Write the run as a Chrome trace (``{"traceEvents": [...], ...}``, one line) to
    ``output``; returns how many trace events it holds."""
    lanes = lay_out(facts, table, nested=True)
    output.write(b'{"traceEvents":[')
    written = 0
    batch: list[bytes] = []
    for event in _events(facts, table, lanes):
        batch.append(_encode(event))
        if len(batch) == _BATCH:
            output.write((b"," if written else b"") + b",".join(batch))
            written += len(batch)
            batch.clear()
    if batch:
        output.write((b"," if written else b"") + b",".join(batch))
        written += len(batch)
    other = {
        "workflow_id": facts.workflow_id,
        "run_id": facts.run_id,
        "status": facts.status,
        "trace_file": str(facts.trace_file),
        "started_epoch_seconds": facts.started,
    }
    output.write(b'],"displayTimeUnit":"ms","otherData":' + _encode(other) + b"}\n")
    return written


class _NodeArgs(msgspec.Struct, omit_defaults=True):
    status: str
    attempt: int
    node_index: int | None = None
    duration_seconds: float | None = None
    cost_usd: float | None = None
    output_hash: str | None = None
    output_summary: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    error: str | None = None
    parent_id: str | None = None
    depends_on: tuple[str, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    usage_cost_usd: float | None = None


class _NodeEvent(msgspec.Struct, omit_defaults=True):
    """A node attempt's ``X`` event; a field at its default is left out."""

    name: str
    cat: str
    ph: str
    ts: int
    dur: int
    pid: int
    tid: int
    args: _NodeArgs
    cname: str | None = None


_CATEGORIES = {status: f"node,{status}" for status in STATUS_CODES}


def _events(facts: RunFacts, table: AttemptTable, lanes: Lanes) -> Iterator[Any]:
    pid = facts.pid
    name = facts.workflow_id or "workflow"
    yield _meta(pid, _WORKFLOW_TID, "process_name", {"name": name})
    yield _meta(pid, _WORKFLOW_TID, "thread_name", {"name": "workflow"})
    yield _meta(pid, _WORKFLOW_TID, "thread_sort_index", {"sort_index": 0})
    for lane in range(lanes.count):
        tid = lane + 1
        yield _meta(pid, tid, "thread_name", {"name": f"lane {lane + 1}"})
        yield _meta(pid, tid, "thread_sort_index", {"sort_index": tid})
    workflow: dict[str, Any] = {
        "name": name,
        "cat": "workflow",
        "ph": "X",
        "ts": 0,
        "dur": lanes.span_us,
        "pid": pid,
        "tid": _WORKFLOW_TID,
        "args": {
            "run_id": facts.run_id,
            "status": facts.status,
            "total_nodes": facts.total_nodes,
            **facts.counts._asdict(),
            "cost_usd": table.figures.cost_usd(facts, len(facts.node_ids)),
        },
    }
    if facts.error is not None:
        workflow["args"]["error"] = facts.error
    if not facts.ok:
        workflow["cname"] = "terrible"
    yield workflow
    node_ids = facts.node_ids
    slots, numbers, codes = table.slot, table.number, table.status
    durations, costs, summaries = table.duration, table.cost, table.summary
    starts, ends, lane_of = lanes.start_us, lanes.end_us, lanes.lane
    tokens_in, tokens_out, usage_cost = table.input_tokens, table.output_tokens, table.usage_cost
    for position, index in enumerate(lanes.order):
        slot = slots[index]
        status = STATUS_CODES[codes[index]]
        duration = durations[index]
        summary = summaries[index]
        start = starts[position]
        yield _NodeEvent(
            name=node_ids[slot],
            cat=_CATEGORIES[status],
            ph="X",
            ts=start,
            dur=ends[position] - start,
            pid=pid,
            tid=lane_of[position] + 1,
            args=_NodeArgs(
                status=status,
                attempt=numbers[index],
                node_index=facts.node_index(slot),
                duration_seconds=None if duration != duration else duration,
                cost_usd=costs[index] or None,
                output_hash=table.hashes[index],
                output_summary=msgspec.UNSET if summary == b"null" else msgspec.Raw(summary),
                error=table.errors.get(index),
                parent_id=facts.parent_id(slot),
                depends_on=facts.depends_on(slot),
                input_tokens=tokens_in[index],
                output_tokens=tokens_out[index],
                usage_cost_usd=usage_cost[index] or None,
            ),
            cname=_COLOURS.get(status),
        )
    yield from _flows(facts, table, lanes, pid)
    yield from _instants(facts, table, lanes, pid)


def _flows(
    facts: RunFacts, table: AttemptTable, lanes: Lanes, pid: int
) -> Iterator[dict[str, Any]]:
    """An arrow from each upstream node's attempt to each attempt that depends on it: the
    upstream's latest attempt that started no later than the dependent one."""
    if not table.depends_on:
        return
    wanted = {upstream for slots in table.depends_on.values() for upstream in slots}
    positions: dict[int, list[int]] = {}  # by start, as laid out
    dependents: list[int] = []
    for position, index in enumerate(lanes.order):
        slot = table.slot[index]
        if slot in wanted:
            positions.setdefault(slot, []).append(position)
        if table.depends_on.get(index):
            dependents.append(position)
    flow = 0
    for position in dependents:
        index = lanes.order[position]
        start = lanes.start_us[position]
        for upstream in table.depends_on[index]:
            before = [p for p in positions.get(upstream, ()) if lanes.start_us[p] <= start]
            if not before:
                continue
            source = before[-1]
            flow += 1
            name = f"{facts.node_ids[upstream]} -> {facts.node_ids[table.slot[index]]}"
            common = {"name": name, "cat": "depends_on", "id": flow, "pid": pid}
            yield {**common, "ph": "s", "ts": lanes.start_us[source], "tid": lanes.lane[source] + 1}
            yield {**common, "ph": "f", "bp": "e", "ts": start, "tid": lanes.lane[position] + 1}


def _instants(
    facts: RunFacts, table: AttemptTable, lanes: Lanes, pid: int
) -> Iterator[dict[str, Any]]:
    instant = _placer(facts, table, lanes, pid)
    for note in table.notes:
        args = dict(note.fields) if note.fields is not None else {}
        if note.node_id is not None:
            args["node_id"] = note.node_id
        name = f"note: {note.message if note.message is not None else ''}"
        yield instant(name, "note", note.epoch_seconds, note.node_id, args)
    retries: dict[int, list[TraceLine]] = {}
    for slot, retry in table.retries:
        retries.setdefault(slot, []).append(retry)
    skipped: dict[int, list[int]] = {}
    for index in _skips(table):
        skipped.setdefault(table.slot[index], []).append(index)
    for slot in sorted(retries.keys() | skipped.keys()):
        node_id = facts.node_ids[slot]
        for retry in retries.get(slot, ()):
            args = {
                key: value
                for key, value in (
                    ("attempt", retry.attempt),
                    ("error", retry.error),
                    ("delay_seconds", retry.delay_seconds),
                )
                if value is not None
            }
            yield instant(f"retry {node_id}", "retry", retry.epoch_seconds, node_id, args)
        for index in sorted(skipped.get(slot, ()), key=lambda i: (table.start[i], i)):
            reason = table.reasons.get(index)
            args = {"reason": reason} if reason else {}
            yield instant(f"skipped {node_id}", "skip", table.start[index], node_id, args)
    if facts.error is not None:
        error = instant(
            "workflow error", "workflow,failed", facts.ended, None, {"error": facts.error}
        )
        error["cname"] = "terrible"
        yield error


def _skips(table: AttemptTable) -> set[int]:
    skipped = STATUS_CODES.index("skipped")
    return {i for i, code in enumerate(table.status) if code == skipped}


def _placer(
    facts: RunFacts, table: AttemptTable, lanes: Lanes, pid: int
) -> Callable[[str, str, Any, Any, dict[str, Any]], dict[str, Any]]:
    """Makes an instant event, on the lane of that node's attempt running at that moment if
    there is one, else on the workflow's track."""
    wanted = {str(note.node_id) for note in table.notes if note.node_id is not None}
    wanted |= {facts.node_ids[slot] for slot, _ in table.retries}
    wanted |= {facts.node_ids[table.slot[i]] for i in _skips(table)}
    bars_of: dict[str, list[int]] = {}
    if wanted:
        for position, index in enumerate(lanes.order):
            node_id = facts.node_ids[table.slot[index]]
            if node_id in wanted:
                bars_of.setdefault(node_id, []).append(position)

    def instant(
        name: str, category: str, epoch: Any, node_id: Any, args: dict[str, Any]
    ) -> dict[str, Any]:
        ts = lanes.offset_us(epoch) if isinstance(epoch, int | float) else 0
        tid, scope = _WORKFLOW_TID, "g"
        for position in bars_of.get(str(node_id), ()) if node_id is not None else ():
            if lanes.start_us[position] <= ts <= lanes.end_us[position]:
                tid, scope = lanes.lane[position] + 1, "t"
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

    return instant


def _meta(pid: int, tid: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": args}
