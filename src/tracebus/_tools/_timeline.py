"""The timeline page: one self-contained HTML file, a canvas Gantt chart of the node attempts.

The page loads nothing: its style, script and data are inline, and a Content-Security-Policy
forbids every fetch. Bars are drawn on a canvas, only those in view, so a run of 10,000
nodes stays responsive. After its first frame the script records in the page itself what it
drew (``#drawn``: bars, lanes, failed bars, and how many bars show their status colour when
read back from the canvas), which is what the tests check in a headless browser. The page
is written as it is made, a column of the data at a time, from the run's attempt table.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TextIO

import msgspec

from .._text import one_line
from ._attempts import STATUS_CODES, AttemptTable, Lanes, lay_out
from ._scan import RunFacts
from ._summary import format_seconds, render_summary

_SHOWN_FAILURES = 50
_PLACEHOLDER = re.compile(r"__(TITLE|HEADER|DATA)__")
_COLUMNS = (
    "node",
    "index",
    "lane",
    "start",
    "end",
    "status",
    "attempt",
    "attempts",
    "duration",
    "cost",
    "hash",
    "error",
    "output",
    "reason",
)


def write_timeline(facts: RunFacts, table: AttemptTable, output: TextIO) -> None:
    """Write the timeline page of the run to ``output``."""
    lanes = lay_out(facts, table)
    summary = table.figures.summary(facts, facts.node_ids, facts.node_status, lanes.count)
    template = resources.files(__package__).joinpath("timeline.html").read_text("utf-8")
    parts: dict[str, Callable[[], object]] = {
        "TITLE": lambda: output.write(html.escape(f"{facts.workflow_id or 'run'} timeline")),
        "HEADER": lambda: output.write(_header(facts, summary)),
        "DATA": lambda: _write_data(facts, table, lanes, output),
    }
    at = 0
    for match in _PLACEHOLDER.finditer(template):
        output.write(template[at : match.start()])
        parts[match.group(1)]()
        at = match.end()
    output.write(template[at:])


def _write_data(facts: RunFacts, table: AttemptTable, lanes: Lanes, output: TextIO) -> None:
    head = {
        "workflow_id": facts.workflow_id,
        "status": facts.status,
        "statuses": STATUS_CODES,
        "lanes": lanes.count,
        "span": lanes.span_us,
        "started": _iso(facts.started),
    }
    output.write(_script_json(head)[:-1] + ',"bars":{')
    for number, name in enumerate(_COLUMNS):
        column = _column(name, facts, table, lanes)
        output.write(("," if number else "") + _script_json(name) + ":" + _script_json(column))
    notes = [
        [lanes.offset_us(note.epoch_seconds), str(note.message or ""), note.node_id]
        for note in table.notes
        if note.epoch_seconds is not None
    ]
    tail = {"notes": notes, "counts": facts.counts._asdict()}
    output.write("}," + _script_json(tail)[1:])


def _column(name: str, facts: RunFacts, table: AttemptTable, lanes: Lanes) -> list[Any]:
    order = lanes.order
    if name == "lane":
        return list(lanes.lane)
    if name == "start":
        return list(lanes.start_us)
    if name == "end":
        return list(lanes.end_us)
    if name == "status":
        return [table.status[i] for i in order]
    if name == "attempt":
        return [table.number[i] for i in order]
    if name == "error":
        return [table.errors.get(i) for i in order]
    if name == "reason":
        return [table.reasons.get(i) or None for i in order]
    if name == "hash":
        return [table.hashes[i] for i in order]
    if name == "output":
        return [_short_json(table.summary[i]) for i in order]
    if name == "duration":
        return [d if (d := table.duration[i]) == d else None for i in order]
    if name == "cost":
        return [table.cost[i] or None for i in order]
    slots = [table.slot[i] for i in order]
    if name == "node":
        return [facts.node_ids[slot] for slot in slots]
    if name == "index":
        return [facts.node_index(slot) for slot in slots]
    return [table.tries[slot] for slot in slots]  # attempts


def _short_json(raw: bytes) -> str | None:
    if raw == b"null":
        return None
    value = msgspec.json.decode(raw)
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=repr)
    return text if len(text) <= 400 else text[:397] + "..."


def _header(run: RunFacts, summary: dict[str, Any]) -> str:
    e = html.escape
    s = summary
    state = run.status if run.ok or run.status != "complete" else "complete-with-failures"
    label = {"complete-with-failures": f"complete, {s['nodes_failed']} failed"}.get(state, state)
    parallelism = f"{s['parallelism']:.2f}x" if s["parallelism"] is not None else "-"
    figures = [
        (
            "nodes",
            f"{s['nodes_completed']} completed / {s['nodes_failed']} failed / "
            f"{s['nodes_skipped']} skipped / {s['nodes_unfinished']} unfinished "
            f"of {s['total_nodes']}",
        ),
        (
            "attempts",
            f"{s['attempts_failed']} failed / {s['retries']} retries / "
            f"{s['nodes_retried']} nodes retried",
        ),
        ("wall time", format_seconds(s["wall_seconds"])),
        ("node time", format_seconds(s["node_seconds"])),
        ("parallelism", parallelism),
        ("peak in flight", str(s["peak_in_flight"])),
        ("cost", "unknown" if s["cost_usd"] is None else f"${s['cost_usd']:.4f}"),
        ("started", _iso(run.started) or "-"),
        ("run", run.run_id or "-"),
    ]
    parts = [
        f"<h1>{e(run.workflow_id or '(unnamed workflow)')} "
        f'<span class="badge {e(state)}">{e(label)}</span></h1>',
        '<dl class="figures">',
        *(f"<div><dt>{e(k)}</dt><dd>{e(v)}</dd></div>" for k, v in figures),
        "</dl>",
    ]
    if run.error:
        parts.append(f'<p class="run-error">workflow error: {e(run.error)}</p>')
    failures = s["failures"]
    if failures:
        parts.append(f"<details open><summary>{len(failures)} failed node(s)</summary><ul>")
        for failure in failures[:_SHOWN_FAILURES]:
            parts.append(
                f'<li><a href="#" data-node="{e(failure["node_id"])}">{e(failure["node_id"])}</a>'
                f" {e(one_line(failure['error'] or '', 200))}</li>"
            )
        if len(failures) > _SHOWN_FAILURES:
            parts.append(f"<li>and {len(failures) - _SHOWN_FAILURES} more</li>")
        parts.append("</ul></details>")
    if run.warnings:
        parts.append('<ul class="warnings">')
        parts += [f"<li>{e(w)}</li>" for w in run.warnings]
        parts.append("</ul>")
    parts.append(f'<pre class="text-summary" hidden>{e(render_summary(s))}</pre>')
    return "\n".join(parts)


def _script_json(data: Any) -> str:
    # inside <script>: no "<" may start a closing tag, and ensure_ascii covers U+2028/9
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
