"""``tracebus diff`` as plain text: the two runs, the totals side by side, then one section
per kind of change, each left out when nothing is in it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from .._text import one_line, printable
from ._summary import format_seconds

Show = Callable[[Any], str]


def usd_text(value: float) -> str:
    """Dollars to four places, as ``tracebus summary`` shows a run's cost."""
    return f"${value:.4f}"


def _usd_fine(value: float) -> str:
    """Dollars to six places, for a node's or a model's cost."""
    return f"${value:.6f}"


_TOTALS: tuple[tuple[str, str, Show], ...] = (
    ("nodes_seen", "nodes", str),
    ("nodes_completed", "completed", str),
    ("nodes_failed", "failed", str),
    ("nodes_skipped", "skipped", str),
    ("nodes_unfinished", "unfinished", str),
    ("wall_seconds", "wall time", format_seconds),
    ("node_seconds", "node time", format_seconds),
    ("cost_usd", "cost", usd_text),
    ("tokens", "tokens", str),
)


def render_diff(diff: dict[str, Any]) -> str:
    """The comparison ``diff_runs`` made, as aligned plain text with no colour."""
    a, b = diff["a"], diff["b"]
    lines = [f"{a['workflow_id'] or '(unnamed workflow)'}: run A against run B"]
    for name, head in (("A", a), ("B", b)):
        seed = ", seed format" if head["format"] == "seed" else ""
        lines.append(
            f"  {name}  {head['run_id'] or '-'}  {head['status']}{seed}  {head['trace_file']}"
        )
    if b["workflow_id"] != a["workflow_id"]:
        lines.append(f"  B is a run of {b['workflow_id'] or '(unnamed workflow)'}")
    totals = [("", "A", "B", "change")]
    totals += [(label, *_cells(diff["totals"][key], show)) for key, label, show in _TOTALS]
    lines += ["", "Totals", *_columns(totals)]
    changes = 0
    for title, rows in _sections(diff):
        if rows:
            changes += 1
            lines += ["", title, *rows]
    if not changes:
        lines += ["", "No node differs."]
    check = diff["check"]
    if check["gates"]:
        tripped = ",".join(check["tripped"]) or "none"
        lines += ["", f"check {','.join(check['gates'])}: tripped {tripped}"]
    for name, head in (("A", a), ("B", b)):
        lines += [f"warning (run {name}): {one_line(w, 300)}" for w in head["warnings"]]
    return "\n".join(map(printable, lines)) + "\n"


def _sections(diff: dict[str, Any]) -> list[tuple[str, list[str]]]:
    limits = diff["thresholds"]
    rule = f"by {limits['slower']:g}x and {format_seconds(limits['min_seconds'])} or more"
    spend = diff["nodes_spend"]
    tokens = any(r["tokens"]["a"] or r["tokens"]["b"] for r in spend)
    spend_rows = [
        ("", "cost A", "cost B", "change", *(("tokens A", "tokens B", "change") if tokens else ()))
    ]
    spend_rows += [
        (
            r["node_id"],
            *_cells(r["cost_usd"], _usd_fine),
            *(_cells(r["tokens"], str) if tokens else ()),
        )
        for r in spend
    ]
    models = [("", "calls A", "calls B", "tokens A", "tokens B", "cost A", "cost B")]
    models += [
        (
            m["model"],
            str(m["calls"]["a"]),
            str(m["calls"]["b"]),
            str(m["input_tokens"]["a"] + m["output_tokens"]["a"]),
            str(m["input_tokens"]["b"] + m["output_tokens"]["b"]),
            _usd_fine(m["cost_usd"]["a"]),
            _usd_fine(m["cost_usd"]["b"]),
        )
        for m in diff["models"]
    ]
    return [
        _listed(
            "Newly failing",
            [
                f"{n['node_id']} ({'added' if n['before'] is None else 'was ' + n['before']}): "
                f"{one_line(n['error'] or '', 200)}"
                for n in diff["newly_failing"]
            ],
        ),
        _listed("Newly passing", [n["node_id"] for n in diff["newly_passing"]]),
        _listed(
            "Status changed",
            [f"{n['node_id']}: {n['before']} -> {n['after']}" for n in diff["status_changed"]],
        ),
        _listed("Added", [f"{n['node_id']} ({n['status']})" for n in diff["added"]]),
        _listed("Removed", [f"{n['node_id']} ({n['status']})" for n in diff["removed"]]),
        _listed(
            "Output changed",
            [
                f"{n['node_id']}: {_summary(n['a']['summary'])} -> {_summary(n['b']['summary'])}"
                for n in diff["output_changed"]
            ],
        ),
        _listed(
            f"Slower {rule}", _columns([_timed(r) for r in diff["slower"]], ""), diff["slower"]
        ),
        _listed(
            f"Faster {rule}", _columns([_timed(r) for r in diff["faster"]], ""), diff["faster"]
        ),
        _listed(
            "Cost and tokens by node",
            _columns(spend_rows, "")[1:],
            spend,
            _columns(spend_rows, "")[0],
        ),
        _listed("By model", _columns(models, "")[1:], diff["models"], _columns(models, "")[0]),
    ]


def _listed(
    title: str, rows: list[str], items: list[Any] | None = None, header: str | None = None
) -> tuple[str, list[str]]:
    count = len(items if items is not None else rows)
    if not count:
        return title, []
    shown = [f"  {header}"] if header is not None else []
    return f"{title} ({count})", shown + [f"  {row}" for row in rows]


def _timed(row: dict[str, Any]) -> tuple[str, ...]:
    ratio = row["ratio"]
    return (
        row["node_id"],
        format_seconds(row["a_seconds"]),
        "->",
        format_seconds(row["b_seconds"]),
        f"{ratio:.2f}x" if ratio is not None else "",
    )


def _cells(pair: dict[str, Any], show: Show) -> tuple[str, str, str]:
    delta = pair["delta"]
    change = "" if not delta else ("+" if delta > 0 else "-") + show(abs(delta))
    return show(pair["a"]), show(pair["b"]), change


def _columns(rows: Sequence[tuple[str, ...]], indent: str = "  ") -> list[str]:
    """Rows as columns: the first left-aligned, the others right-aligned."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        (
            indent
            + "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        ).rstrip()
        for row in rows
    ]


def _summary(summary: Any, limit: int = 60) -> str:
    if summary is None:
        return "-"
    text = summary if isinstance(summary, str) else msgspec.json.encode(summary).decode()
    return one_line(text, limit)
