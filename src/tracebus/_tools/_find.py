"""Which files hold a run: a path given on the command line resolved to a trace and metadata.

A RUN is one of:

- a trace file (``traces/trace_step_NN_STAMP.jsonl`` or ``audit/step_NN/trace_NN.jsonl``);
- a metadata file (``audit/step_NN/metadata_NN.json``): the trace beside it;
- an audit step directory (``audit/step_NN``): its ``trace_NN.jsonl``;
- an output directory (holding ``traces/`` or ``audit/``): its latest run, the trace in
  ``traces/`` with the newest stamp in its name, else the newest ``audit/step_NN`` trace.

The metadata of a trace in ``traces/`` is its step's ``metadata_NN.json`` (or an archived one
under ``previous/``) when that file names this trace, or, for the seed's metadata that names
no such file, when its start time matches the trace's stamp.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .._exceptions import RunNotFoundError
from .._layout import STEP_DIR, TRACE_NAME, audit_file


@dataclass(frozen=True, slots=True)
class FoundRun:
    trace_file: Path
    metadata_file: Path | None
    metadata: dict[str, Any] | None
    warnings: tuple[str, ...] = ()


def find_run(path: str | os.PathLike[str]) -> FoundRun:
    """Resolve ``path`` to a run's trace and metadata.

    Raises RunNotFoundError when the path does not exist or holds no trace.
    """
    given = Path(path)
    if not given.exists():
        raise RunNotFoundError(f"{given}: no such file or directory")
    if given.is_dir():
        trace = _trace_in_dir(given)
    elif (named := audit_file(given.name)) is not None and named[0] == "metadata":
        trace = given.parent / f"trace_{named[1]}.jsonl"
        if not trace.is_file():
            raise RunNotFoundError(f"{given}: no {trace.name} beside this metadata file")
    else:
        trace = given
    metadata_file, metadata, warnings = _metadata_for(trace)
    return FoundRun(trace, metadata_file, metadata, warnings)


def find_trace(path: str | os.PathLike[str]) -> Path | None:
    """The trace ``path`` designates, or None while an output directory holds none yet.

    Raises RunNotFoundError when the path does not exist or is a directory of another kind.
    """
    given = Path(path)
    if given.is_dir() and is_output_dir(given) and latest_trace(given) is None:
        return None
    return find_run(given).trace_file


def _trace_in_dir(directory: Path) -> Path:
    own = _audit_trace(directory)
    if own is not None:
        return own
    if is_output_dir(directory):
        latest = latest_trace(directory)
        if latest is not None:
            return latest
        raise RunNotFoundError(f"{directory}: no trace in traces/ or audit/step_NN/ yet")
    raise RunNotFoundError(
        f"{directory}: not a run (expected a trace file, an audit step directory, "
        "or an output directory with traces/ or audit/)"
    )


def is_output_dir(directory: Path) -> bool:
    """Whether ``directory`` is an output directory: it holds ``traces/`` or ``audit/``."""
    return (directory / "traces").is_dir() or (directory / "audit").is_dir()


def _audit_trace(directory: Path) -> Path | None:
    step = STEP_DIR.fullmatch(directory.name)
    if step is not None:
        trace = directory / f"trace_{step['step']}.jsonl"
        if trace.is_file():
            return trace
    traces = sorted(p for p in directory.glob("trace_*.jsonl") if _is_audit_trace(p.name))
    return traces[-1] if traces else None


def latest_trace(output_dir: Path) -> Path | None:
    """An output directory's latest run's trace (see the module's docstring), or None."""
    stamped = [p for p in (output_dir / "traces").glob("*.jsonl") if p.is_file()]
    if stamped:
        return max(stamped, key=_stamp_key)
    audit = [
        p for p in (output_dir / "audit").glob("step_*/trace_*.jsonl") if _is_audit_trace(p.name)
    ]
    return max(audit, key=lambda p: p.stat().st_mtime) if audit else None


def _stamp_key(trace: Path) -> tuple[str, int, float]:
    mtime = trace.stat().st_mtime
    match = TRACE_NAME.fullmatch(trace.name)
    if match is None:
        return (datetime.fromtimestamp(mtime).strftime("%Y%m%d_%H%M%S"), 0, mtime)
    return (match["second"], int(match["nth"] or 1), mtime)


def _metadata_for(trace: Path) -> tuple[Path | None, dict[str, Any] | None, tuple[str, ...]]:
    warnings: list[str] = []
    if (named := audit_file(trace.name)) is not None and named[0] == "trace":
        candidate = trace.parent / f"metadata_{named[1]}.json"
        metadata = _load(candidate, warnings) if candidate.is_file() else None
        return (candidate if metadata is not None else None), metadata, tuple(warnings)
    match = TRACE_NAME.fullmatch(trace.name)
    if match is None:
        return None, None, ()
    step_dir = trace.parent.parent / "audit" / f"step_{match['step']}"
    name = f"metadata_{match['step']}.json"
    for candidate in (step_dir / name, *sorted(step_dir.glob(f"previous/*/{name}"))):
        if not candidate.is_file():
            continue
        metadata = _load(candidate, warnings)
        if metadata is not None and _describes(metadata, trace, match["second"]):
            return candidate, metadata, tuple(warnings)
    return None, None, tuple(warnings)


def _describes(metadata: dict[str, Any], trace: Path, stamp: str) -> bool:
    named = metadata.get("execution_trace_file")
    if isinstance(named, str) and named:
        return Path(named).name == trace.name
    started = metadata.get("start_time")
    if not isinstance(started, str):
        return False
    try:
        return datetime.fromisoformat(started).strftime("%Y%m%d_%H%M%S") == stamp
    except ValueError:
        return False


def _load(path: Path, warnings: list[str]) -> dict[str, Any] | None:
    try:
        data = _decoded(path)
    except (OSError, ValueError, RecursionError) as exc:
        warnings.append(f"metadata {path} unreadable ({exc}); figures come from the trace")
        return None
    if not isinstance(data, dict):
        warnings.append(f"metadata {path} is not a JSON object; figures come from the trace")
        return None
    return data


def _decoded(path: Path) -> Any:
    """The JSON in ``path``, decoded by msgspec where it can (fast), else by ``json``, whose
    verdict (NaN accepted, the wording of an error) is the one given."""
    import msgspec  # not at import: the command line's help needs none of it

    data = path.read_bytes()
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return json.loads(data.decode("utf-8"))


def _is_audit_trace(name: str) -> bool:
    named = audit_file(name)
    return named is not None and named[0] == "trace"
