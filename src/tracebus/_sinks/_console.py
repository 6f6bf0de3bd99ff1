"""A run's console: the header shown when it starts and the summary shown when it ends, on the
user's stream; a stream that fails is reported at close, not retried."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TextIO

from .._events import Event, WorkflowError
from .._layout import RunLayout
from .._state import RunState
from .._text import printable

_RULE = "=" * 80


class Console:
    """The user's stream (None for silence), and the first error it raised."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self.error: BaseException | None = None

    def failed(self, error: BaseException) -> None:
        """Remember the console's first failure (the stream's, or the progress bar's)."""
        if self.error is None:
            self.error = error

    def show(self, text: str) -> None:
        """Print ``text``; a stream that fails is dropped."""
        if self._stream is None:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except Exception as exc:  # a closed stream, an encoding that cannot show the text
            self._stream = None
            self.failed(exc)


def header(layout: RunLayout, pid: int, started: datetime) -> str:
    """The block shown after ``workflow_start``."""
    return _block(
        f"[RUN] Executing: {layout.workflow_id}",
        f"[DIR] Output: {layout.output_dir.absolute()}",
        f" Run: {layout.run_id}",
        f" PID: {pid}",
        f" Started: {started.strftime('%Y-%m-%d %H:%M:%S')}",
    )


def summary(event: Event, state: RunState, layout: RunLayout, dropped: int) -> str:
    """The block shown after the run's end, ``event``."""
    elapsed = state.elapsed()
    if isinstance(event, WorkflowError):
        return _block(
            f" Workflow failed: {layout.workflow_id}",
            f" Error: {event.error}",
            *_count_lines(state),
            f" Time: {elapsed:.2f}s",
            f" Trace: {_summary_path(layout.trace_file, layout)}",
            f" Log: {_summary_path(layout.log_file, layout)}",
        )
    lines = [f" Workflow completed: {layout.workflow_id}", *_count_lines(state)]
    lines.append(f" Total time: {elapsed:.2f}s ({elapsed / 60:.2f}m)")
    cost = state.cumulative_cost_usd
    if cost is not None and cost > 0:
        lines.append(f" Cost: ${cost:.4f}")
    lines += _usage_lines(state)
    if dropped:
        lines.append(f" Events dropped: {dropped}")
    lines += [
        f" Trace file: {_summary_path(layout.trace_file, layout)}",
        f" Log file: {_summary_path(layout.log_file, layout)}",
    ]
    return _block(*lines)


def _summary_path(path: Path, layout: RunLayout) -> Path:
    """``path`` as the summary shows it: relative to the output directory's parent, as the seed
    printed it (the header gives the output directory in full)."""
    return path.relative_to(layout.output_dir.parent)


def _count_lines(state: RunState) -> list[str]:
    """``Nodes executed: completed/total`` (the classic line), the other node counts that are
    not zero, and the attempt counts when a node was retried; named as in the metadata (see
    ``NodeCounts``)."""
    counts = state.counts()
    shown = [
        ("Nodes failed", counts.nodes_failed),
        ("Nodes skipped", counts.nodes_skipped),
        ("Nodes unfinished", counts.nodes_unfinished),
    ]
    if counts.nodes_retried:
        shown += [
            ("Nodes retried", counts.nodes_retried),
            ("Retries", counts.retries),
            ("Attempts failed", counts.attempts_failed),
        ]
    lines = [f" Nodes executed: {counts.nodes_completed}/{state.total_nodes}"]
    lines += [f" {label}: {value}" for label, value in shown if value]
    return lines


def _usage_lines(state: RunState) -> list[str]:
    """``Tokens: N in / M out``, then one line per model (calls, tokens, cost), when the run
    recorded usage."""
    models = state.usage_by_model
    if not models:
        return []
    tokens_in = sum(int(t["input_tokens"]) for t in models.values())
    tokens_out = sum(int(t["output_tokens"]) for t in models.values())
    lines = [f" Tokens: {tokens_in} in / {tokens_out} out"]
    for model, t in sorted(models.items()):
        calls = int(t["calls"])
        lines.append(
            f"   {model}: {calls} call{'' if calls == 1 else 's'}, "
            f"{int(t['input_tokens'])} in / {int(t['output_tokens'])} out, ${t['cost_usd']:.4f}"
        )
    return lines


def _block(*lines: str) -> str:
    return "\n".join(("", _RULE, *map(printable, lines), _RULE, "")) + "\n"
