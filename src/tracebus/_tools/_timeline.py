"""The timeline page: one self-contained HTML file, a canvas Gantt chart of the node attempts.

The page loads nothing: its style, script and data are inline, and a Content-Security-Policy
forbids every fetch. Bars are drawn on a canvas, only those in view, so a run of 10,000
nodes stays responsive. After its first frame the script records in the page itself what it
drew (``#drawn``: bars, lanes, failed bars, and how many bars show their status colour when
read back from the canvas), which is what the tests check in a headless browser.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from .._text import one_line
from ._lanes import lay_out
from ._record import RunRecord
from ._summary import format_seconds, render_summary, summarize

STATUS_CODES = ("success", "failed", "skipped", "running")
_SHOWN_FAILURES = 50
_PLACEHOLDER = re.compile(r"__(TITLE|HEADER|DATA)__")


def timeline_html(run: RunRecord) -> str:
    """The timeline page of ``run`` as a string."""
    summary = summarize(run)
    template = resources.files(__package__).joinpath("timeline.html").read_text("utf-8")
    parts = {
        "TITLE": html.escape(f"{run.workflow_id or 'run'} timeline"),
        "HEADER": _header(run, summary),
        "DATA": _script_json(_data(run)),
    }
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], template)


def _data(run: RunRecord) -> dict[str, Any]:
    lanes = lay_out(run)
    bars = lanes.bars
    columns: dict[str, list[Any]] = {
        name: []
        for name in (
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
    }
    for bar in bars:
        attempt, node = bar.attempt, bar.node
        columns["node"].append(node.node_id)
        columns["index"].append(node.node_index)
        columns["lane"].append(bar.lane)
        columns["start"].append(bar.start_us)
        columns["end"].append(bar.end_us)
        columns["status"].append(STATUS_CODES.index(attempt.status))
        columns["attempt"].append(attempt.number)
        columns["attempts"].append(len(node.attempts))
        columns["duration"].append(attempt.duration_seconds)
        columns["cost"].append(attempt.cost_usd or None)
        columns["hash"].append(attempt.output_hash)
        columns["error"].append(attempt.error)
        columns["output"].append(_short_json(attempt.output_summary))
        reason = attempt.fields.get("reason") if attempt.status == "skipped" else None
        columns["reason"].append(reason if isinstance(reason, str) and reason else None)
    notes = [
        [lanes.offset_us(epoch), str(note.get("message", "")), note.get("node_id")]
        for note in run.notes
        if isinstance(epoch := note.get("epoch_seconds"), int | float)
    ]
    return {
        "workflow_id": run.workflow_id,
        "status": run.status,
        "statuses": STATUS_CODES,
        "lanes": lanes.count,
        "span": lanes.span_us,
        "started": _iso(run.started),
        "bars": columns,
        "notes": notes,
        "counts": run.counts._asdict(),
    }


def _header(run: RunRecord, summary: dict[str, Any]) -> str:
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


def _script_json(data: dict[str, Any]) -> str:
    # inside <script>: no "<" may start a closing tag, and ensure_ascii covers U+2028/9
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _short_json(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=repr)
    return text if len(text) <= 400 else text[:397] + "..."


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
