"""Every run under one or more output directories, newest first, with its figures.

``find_runs`` is the one way the across-run tools (``tracebus runs``, ``prune``, ``diff``,
``query``, the watch page) discover runs. Which files make a run is
``tracebus._catalog``'s to say; this module adds the figures: from the metadata where it is
complete (status ``complete`` or ``error``, every count a whole number), which costs one small
JSON file per run, and from one pass over the trace (``_scan``) where it is not: a run in
progress, one killed before its end, one of the seed observer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from .._catalog import StoredRun, catalog
from .._counts import NodeCounts
from .._exceptions import RunNotFoundError, TracebusError
from ._find import FoundRun, is_output_dir
from ._lines import TraceLine, iter_blocks
from ._scan import AttemptsOnly, RunScan

Status = Literal["complete", "error", "incomplete", "running"]
#: Every status a run can have, in the order the docs list them.
STATUSES: tuple[Status, ...] = ("complete", "error", "incomplete", "running")


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run found by ``find_runs``: its ids, status, figures and files.

    ``status`` is ``complete`` or ``error`` once the run ended (``workflow_complete``,
    ``workflow_error``), ``running`` while its writer holds the run's lock, ``incomplete``
    when it has no end and no writer (killed, or closed without an end). ``started`` is
    ISO 8601 local time with its offset. ``cost_usd`` is None where the run reported no cost
    and did not complete. ``files`` maps each of the run's files (both traces, both logs, the
    metadata, the collector's entry and lock) to its size; ``bytes`` is what removing them
    frees (a trace and its audit copy linked count once). ``archive`` is the
    ``audit/step_NN/previous/STAMP`` directory of a run a later run of its step archived.
    ``source`` says where the figures come from: ``metadata`` or ``trace``.
    """

    workflow_id: str
    run_id: str | None
    status: Status
    started: str | None
    wall_s: float
    nodes_ok: int
    nodes_failed: int
    nodes_skipped: int
    nodes_unfinished: int
    cost_usd: float | None
    input_tokens: int
    output_tokens: int
    trace: Path
    metadata: Path | None
    files: Mapping[Path, int]
    bytes: int
    archive: Path | None
    output_dir: Path
    step: str
    source: Literal["metadata", "trace"]
    warnings: tuple[str, ...] = ()
    #: The start as an epoch, for ordering (None: unknown).
    started_epoch: float | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The run as plain JSON values (paths as strings)."""
        return {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "status": self.status,
            "started": self.started,
            "wall_s": self.wall_s,
            "nodes_ok": self.nodes_ok,
            "nodes_failed": self.nodes_failed,
            "nodes_skipped": self.nodes_skipped,
            "nodes_unfinished": self.nodes_unfinished,
            "cost_usd": self.cost_usd,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "trace": str(self.trace),
            "metadata": str(self.metadata) if self.metadata is not None else None,
            "files": {str(path): size for path, size in self.files.items()},
            "bytes": self.bytes,
            "archive": str(self.archive) if self.archive is not None else None,
            "output_dir": str(self.output_dir),
            "step": self.step,
            "source": self.source,
            "warnings": list(self.warnings),
        }


def find_runs(dirs: Sequence[str | os.PathLike[str]]) -> list[RunInfo]:
    """Every run under the output directories ``dirs``, newest first (by start time).

    A directory given that holds neither ``traces/`` nor ``audit/`` stands for the output
    directories just below it (a folder of them); an empty one holds no runs. The signature
    and ``RunInfo``'s fields are stable: other tools build on them.

    Raises RunNotFoundError when a directory does not exist, is not a directory, or holds
    files but no output directory.
    """
    found: list[RunInfo] = []
    seen: set[Path] = set()
    for given in dirs:
        for out in output_dirs(given):
            key = out.resolve()
            if key in seen:
                continue
            seen.add(key)
            found.extend(run_info(stored) for stored in catalog(out))
    found.sort(key=_newest_first)
    return found


def output_dirs(given: str | os.PathLike[str]) -> list[Path]:
    """The output directories ``given`` stands for (see ``find_runs``).

    Raises RunNotFoundError as ``find_runs`` says.
    """
    path = Path(given)
    if not path.exists():
        raise RunNotFoundError(f"{path}: no such directory")
    if not path.is_dir():
        raise RunNotFoundError(f"{path}: not a directory (give an output directory)")
    if is_output_dir(path):
        return [path]
    children = sorted(p for p in path.iterdir() if p.is_dir() and is_output_dir(p))
    if not children and any(path.iterdir()):
        raise RunNotFoundError(
            f"{path}: not an output directory (no traces/ or audit/ in it or just below it)"
        )
    return children


def _newest_first(run: RunInfo) -> tuple[float, str]:
    started = run.started_epoch if run.started_epoch is not None else float("-inf")
    return (-started, str(run.trace))


def run_info(stored: StoredRun) -> RunInfo:
    """The figures of one stored run: its metadata's where complete, else its trace's."""
    figures = _from_metadata(stored.metadata)
    source: Literal["metadata", "trace"] = "metadata"
    warnings: tuple[str, ...] = ()
    if figures is None:
        figures, warnings = _from_trace(stored)
        source = "trace"
    sizes = stored.sizes()
    started = stored.metadata.get("start_time") if stored.metadata else None
    if not isinstance(started, str):
        started = _iso(stored.started)
    if stored.metadata_problem is not None:
        warnings = (stored.metadata_problem, *warnings)
    return RunInfo(
        workflow_id=figures.workflow_id or stored.workflow_id or "",
        run_id=stored.run_id or figures.run_id,
        status=figures.status,
        started=started,
        wall_s=figures.wall_s,
        nodes_ok=figures.counts.nodes_completed,
        nodes_failed=figures.counts.nodes_failed,
        nodes_skipped=figures.counts.nodes_skipped,
        nodes_unfinished=figures.counts.nodes_unfinished,
        cost_usd=figures.cost_usd,
        input_tokens=figures.input_tokens,
        output_tokens=figures.output_tokens,
        trace=stored.trace,
        metadata=stored.metadata_file,
        files=sizes,
        bytes=stored.freed_bytes(),
        archive=stored.archive,
        output_dir=stored.output_dir,
        step=stored.step_num,
        source=source,
        warnings=warnings,
        started_epoch=stored.started,
    )


@dataclass(slots=True)
class _Figures:
    workflow_id: str | None
    run_id: str | None
    status: Status
    wall_s: float
    counts: NodeCounts
    cost_usd: float | None
    input_tokens: int
    output_tokens: int


def _from_metadata(meta: Mapping[str, Any] | None) -> _Figures | None:
    if meta is None:
        return None
    status = meta.get("status")
    values: dict[str, Any] = {key: meta.get(key) for key in NodeCounts._fields}
    if status not in ("complete", "error") or not all(map(_whole, values.values())):
        return None
    wall: Any = meta.get("total_time_seconds")
    cost: Any = meta.get("cumulative_cost_usd")
    tokens = [0, 0]
    usage = meta.get("usage_by_model")
    if isinstance(usage, dict):
        for totals in usage.values():
            if isinstance(totals, dict):
                for slot, key in enumerate(("input_tokens", "output_tokens")):
                    if _real(totals.get(key)):
                        tokens[slot] += int(totals[key])
    return _Figures(
        workflow_id=_text(meta.get("workflow_id")),
        run_id=_text(meta.get("run_id")),
        status="complete" if status == "complete" else "error",
        wall_s=float(wall) if _real(wall) else 0.0,
        counts=NodeCounts(**values),
        cost_usd=float(cost) if _real(cost) else None,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
    )


class _Costs(AttemptsOnly):
    """A NodeSink that keeps only the sum of the attempts' costs."""

    def __init__(self) -> None:
        self.cost = 0.0
        self.costed = False

    def attempt(
        self,
        slot: int,
        node_id: str,
        status: str,
        start: float,
        end: float | None,
        line: TraceLine | None,
    ) -> None:
        if line is not None and line.cost_usd:
            self.cost += line.cost_usd
            self.costed = True


def _from_trace(stored: StoredRun) -> tuple[_Figures, tuple[str, ...]]:
    """One pass over the trace; ``running`` when the writer holds the run's lock."""
    scan = RunScan(_Costs)
    torn: list[int] = []
    problem: str | None = None
    try:
        for block in iter_blocks(stored.trace, lambda number, _raw: torn.append(number)):
            scan.add_all(block)
    except (TracebusError, OSError) as exc:
        problem = f"{stored.trace}: {exc}"
    found = FoundRun(stored.trace, stored.metadata_file, stored.metadata)
    facts = scan.finish(found, torn_line=torn[0] if torn else None)
    status: Status
    if stored.locked() and (stored.metadata or {}).get("status") not in ("complete", "error"):
        status = "running"
    else:
        status = "error" if facts.status == "error" else facts.status  # type: ignore[assignment]
    cost = facts.reported_cost_usd
    if cost is None:  # the metadata's rule: the nodes' and the usage events' costs
        spent = scan.sink.costed or facts.usage_cost_usd != 0.0
        total = scan.sink.cost + facts.usage_cost_usd
        cost = total if spent or facts.status == "complete" else None
    models = facts.usage_by_model.values()
    return (
        _Figures(
            workflow_id=facts.workflow_id or None,
            run_id=facts.run_id,
            status=status,
            wall_s=facts.wall_seconds,
            counts=facts.counts,
            cost_usd=cost,
            input_tokens=int(sum(totals.get("input_tokens", 0) for totals in models)),
            output_tokens=int(sum(totals.get("output_tokens", 0) for totals in models)),
        ),
        (problem, *facts.warnings) if problem is not None else facts.warnings,
    )


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch).astimezone().isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any) -> float:
    return float(value) if _real(value) else 0.0


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
