"""The figures of a run at a glance, as a dict (``--json``) and as plain text."""

from __future__ import annotations

from typing import Any

from .._text import printable
from ._lanes import lay_out
from ._run import RunRecord

TOP = 10


def summarize(run: RunRecord) -> dict[str, Any]:
    """Status, node counts, times, parallelism, cost, the costliest and slowest nodes,
    failures and warnings, as plain JSON-ready data."""
    nodes = run.nodes
    counts = run.counts
    node_seconds = sum(n.duration_seconds for n in nodes)
    wall = run.wall_seconds
    costly = sorted((n for n in nodes if n.cost_usd > 0), key=lambda n: (-n.cost_usd, n.node_id))
    slow = sorted(nodes, key=lambda n: (-n.duration_seconds, n.node_id))
    return {
        "workflow_id": run.workflow_id,
        "run_id": run.run_id,
        "status": run.status,
        "ok": run.ok,
        "error": run.error,
        "format": "seed" if run.seed_format else "tracebus",
        "trace_file": str(run.trace_file),
        "metadata_file": str(run.metadata_file) if run.metadata_file else None,
        "total_nodes": run.total_nodes,
        "nodes_succeeded": counts.nodes_completed,  # this key's first name, kept
        **counts._asdict(),
        "wall_seconds": wall,
        "node_seconds": node_seconds,
        "parallelism": node_seconds / wall if wall > 0 else None,
        "peak_in_flight": lay_out(run).count,
        "cost_usd": run.cost_usd,
        "costliest": [{"node_id": n.node_id, "cost_usd": n.cost_usd} for n in costly[:TOP]],
        "slowest": [
            {"node_id": n.node_id, "duration_seconds": n.duration_seconds, "status": n.status}
            for n in slow[:TOP]
        ],
        "failures": [
            {"node_id": n.node_id, "error": n.error, "attempts": len(n.attempts)}
            for n in run.failed_nodes
        ],
        "warnings": list(run.warnings),
    }


def render_summary(summary: dict[str, Any]) -> str:
    """The summary as aligned plain text: no colour, no box drawing, readable when piped."""
    s = summary
    status = s["status"]
    if s["nodes_failed"]:
        status += f" ({s['nodes_failed']} failed node{'s' if s['nodes_failed'] != 1 else ''})"
    lines = [f"{s['workflow_id'] or '(unnamed workflow)'}  run {s['run_id'] or '-'}"]
    rows = [
        ("status", status),
        ("error", s["error"]) if s["error"] else None,
        (
            "nodes",
            f"{s['nodes_completed']} completed, {s['nodes_failed']} failed, "
            f"{s['nodes_skipped']} skipped, {s['nodes_unfinished']} unfinished "
            f"of {s['total_nodes']}",
        ),
        (
            "attempts",
            f"{s['attempts_failed']} failed, {s['retries']} retries "
            f"({s['nodes_retried']} node{'s' if s['nodes_retried'] != 1 else ''} retried)",
        ),
        ("wall time", format_seconds(s["wall_seconds"])),
        ("node time", f"{format_seconds(s['node_seconds'])} summed"),
        (
            "parallelism",
            f"{s['parallelism']:.2f}x achieved" if s["parallelism"] is not None else "-",
        ),
        ("peak in flight", str(s["peak_in_flight"])),
        ("cost", _usd(s["cost_usd"])),
        ("trace", s["trace_file"]),
    ]
    if s["format"] == "seed":
        rows.append(("format", "seed observer trace (no run id, no sequence numbers)"))
    lines += [f"  {key:<15}{value}" for key, value in (r for r in rows if r is not None)]
    if s["costliest"]:
        lines += ["", f"Costliest nodes (top {TOP})"]
        lines += _table(
            [(c["node_id"], _usd(c["cost_usd"])) for c in s["costliest"]], right=(False, True)
        )
    if s["slowest"]:
        lines += ["", f"Slowest nodes (top {TOP})"]
        lines += _table(
            [
                (n["node_id"], format_seconds(n["duration_seconds"]), n["status"])
                for n in s["slowest"]
            ],
            right=(False, True, False),
        )
    if s["failures"]:
        lines += ["", f"Failures ({len(s['failures'])})"]
        for failure in s["failures"]:
            tries = f" (after {failure['attempts']} attempts)" if failure["attempts"] > 1 else ""
            lines.append(f"  {failure['node_id']}{tries}: {_one_line(failure['error'] or '')}")
    if s["warnings"]:
        lines += ["", "Warnings"]
        lines += [f"  {_one_line(w)}" for w in s["warnings"]]
    return "\n".join(map(printable, lines)) + "\n"


def _table(rows: list[tuple[str, ...]], right: tuple[bool, ...]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(right))]
    return [
        "  "
        + "  ".join(
            cell.rjust(w) if r else cell.ljust(w)
            for cell, w, r in zip(row, widths, right, strict=True)
        ).rstrip()
        for row in rows
    ]


def format_seconds(value: float) -> str:
    """``812.5ms``, ``3.20s``, ``187.3s (3.1m)``."""
    if value >= 120:
        return f"{value:.1f}s ({value / 60:.1f}m)"
    if value >= 1:
        return f"{value:.2f}s"
    return f"{value * 1000:.1f}ms"


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 300 else flat[:297] + "..."
