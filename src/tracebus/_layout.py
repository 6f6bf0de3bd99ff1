"""Where a run's files go, and the checks that keep them inside the output directory.

The layout is the seed observer's::

    logs/execution_{workflow_id}_{YYYYmmdd_HHMMSS}.log
    traces/trace_step_{NN}_{YYYYmmdd_HHMMSS}.jsonl
    audit/step_{NN}/log_{NN}.log
    audit/step_{NN}/trace_{NN}.jsonl
    audit/step_{NN}/metadata_{NN}.json

with its flaws fixed: the timestamped files are claimed with ``O_EXCL``, so a second run in the
same second gets a ``_2`` suffix instead of sharing the first run's files; the audit directory
holds the latest run of a step, and a rerun first moves the previous run's audit files into
``audit/step_{NN}/previous/{YYYYmmdd_HHMMSS}/`` rather than appending to them.

The audit trace and log are hard links of the timestamped files where the filesystem allows
(one file, two names: the writer writes it once); elsewhere (another filesystem, no link
support) they are files of their own, written in full.
"""

from __future__ import annotations

import os
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ._exceptions import InvalidIdError

_STEP_RE = re.compile(r"step_(\d+)")

#: A timestamped trace's name, ``trace_step_{step}_{stamp}.jsonl``: the stamp is the second the
#: run started, then ``_{nth}`` for a step's second and later runs in that second.
TRACE_NAME = re.compile(
    r"trace_step_(?P<step>\d+)_(?P<stamp>(?P<second>\d{8}_\d{6})(?:_(?P<nth>\d+))?)\.jsonl"
)
#: A step's audit directory's name, ``step_{step}``.
STEP_DIR = re.compile(r"step_(?P<step>\d+)")
_AUDIT_FILE = re.compile(r"(?P<kind>trace|log|metadata)_(?P<step>\d+)\.(?P<suffix>jsonl|log|json)")
_AUDIT_SUFFIX = {"trace": "jsonl", "log": "log", "metadata": "json"}

#: The longest id, in UTF-8 bytes. The longest file name made from an id is the log's,
#: ``execution_{id}_{YYYYmmdd_HHMMSS}_{attempt}.log``: 31 bytes and the attempt's digits
#: around the id; 200 leaves room for those within the 255 bytes most file systems allow.
MAX_ID_BYTES = 200
_SEPARATORS = ("/", "\\")
#: Characters no id may hold, by Unicode category: control characters (NUL, tab, newline,
#: DEL, C1), line and paragraph separators (``str.splitlines`` ends a line there), lone
#: surrogates (not encodable in UTF-8).
_REFUSED = {
    "Cc": "the control character",
    "Zl": "the line separator",
    "Zp": "the paragraph separator",
    "Cs": "the lone surrogate",
}


def validate_id(value: object, what: str = "workflow_id") -> str:
    """Return ``value`` if it is safe as part of a file name.

    Spaces, punctuation and letters of any script are accepted. Raises InvalidIdError (a
    ValueError) naming ``what`` and the value for anything else: not a str, empty, more than
    ``MAX_ID_BYTES`` bytes in UTF-8, a leading ``-`` or ``.``, ``..`` anywhere, a path
    separator (``/`` or ``\\``), a control character, a line separator or a lone surrogate.
    """
    if not isinstance(value, str):
        raise InvalidIdError(f"{what} must be a str, not {type(value).__name__}")
    problem = _id_problem(value)
    if problem is not None:
        shown = repr(value) if len(value) <= 80 else f"{value[:60]!r}... ({len(value)} characters)"
        raise InvalidIdError(f"invalid {what} {shown}: {problem} (it becomes part of file names)")
    return value


def _id_problem(value: str) -> str | None:
    if not value:
        return "it is empty"
    if value[0] in "-.":
        return f"it starts with {value[0]!r}"
    if ".." in value:
        return "it holds '..'"
    for separator in _SEPARATORS:
        if separator in value:
            return f"it holds the path separator {separator!r}"
    if not value.isprintable():  # printable text holds none of the refused categories
        for char in value:
            name = _REFUSED.get(unicodedata.category(char))
            if name is not None:
                return f"it holds {name} U+{ord(char):04X}"
    size = len(value.encode())
    if size > MAX_ID_BYTES:
        return f"it is {size} bytes long in UTF-8, more than {MAX_ID_BYTES}"
    return None


def audit_file(name: str) -> tuple[str, str] | None:
    """What a step's audit file of this name holds (``trace``, ``log`` or ``metadata``) and
    its step; None for any other name."""
    match = _AUDIT_FILE.fullmatch(name)
    if match is None or _AUDIT_SUFFIX[match["kind"]] != match["suffix"]:
        return None
    return match["kind"], match["step"]


def step_number(workflow_id: str) -> str:
    """The ``NN`` of ``step_NN`` in a workflow id, or ``"00"``."""
    match = _STEP_RE.search(workflow_id)
    return match.group(1) if match else "00"


def new_run_id() -> str:
    """A fresh, unique run id."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class RunLayout:
    """The paths of one run's files."""

    output_dir: Path
    workflow_id: str
    run_id: str
    step_num: str
    stamp: str
    log_file: Path
    trace_file: Path
    audit_dir: Path
    audit_log_file: Path
    audit_trace_file: Path
    metadata_file: Path
    #: Whether the audit trace (log) is a second name of the trace (log), or a file of its own.
    audit_trace_linked: bool = False
    audit_log_linked: bool = False

    @property
    def logs_dir(self) -> Path:
        return self.log_file.parent

    @property
    def traces_dir(self) -> Path:
        return self.trace_file.parent


def create_layout(
    output_dir: str | os.PathLike[str], workflow_id: str, run_id: str, started: datetime
) -> RunLayout:
    """Validate the ids, make the directories and claim this run's files.

    Raises InvalidIdError before anything is created when an id is unsafe, and OSError when
    the directories cannot be made.
    """
    validate_id(workflow_id, "workflow_id")
    validate_id(run_id, "run_id")
    out = Path(output_dir)
    step = step_number(workflow_id)
    logs_dir, traces_dir = out / "logs", out / "traces"
    audit_dir = out / "audit" / f"step_{step}"
    for directory in (logs_dir, traces_dir, audit_dir):
        directory.mkdir(parents=True, exist_ok=True)

    base = started.strftime("%Y%m%d_%H%M%S")
    attempt = 1
    while True:
        stamp = base if attempt == 1 else f"{base}_{attempt}"
        log_file = logs_dir / f"execution_{workflow_id}_{stamp}.log"
        trace_file = traces_dir / f"trace_step_{step}_{stamp}.jsonl"
        if _claim(log_file):
            if _claim(trace_file):
                break
            log_file.unlink()
        attempt += 1

    audit_log = audit_dir / f"log_{step}.log"
    audit_trace = audit_dir / f"trace_{step}.jsonl"
    metadata = audit_dir / f"metadata_{step}.json"
    _archive_previous(audit_dir, (audit_log, audit_trace, metadata))
    trace_linked = link_in_place(trace_file, audit_trace)
    log_linked = link_in_place(log_file, audit_log)
    return RunLayout(
        output_dir=out,
        workflow_id=workflow_id,
        run_id=run_id,
        step_num=step,
        stamp=stamp,
        log_file=log_file,
        trace_file=trace_file,
        audit_dir=audit_dir,
        audit_log_file=audit_log,
        audit_trace_file=audit_trace,
        metadata_file=metadata,
        audit_trace_linked=trace_linked,
        audit_log_linked=log_linked,
    )


def _claim(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # less the umask
    except FileExistsError:
        return False
    os.close(fd)
    return True


def link_in_place(source: Path, name: Path) -> bool:
    """Make ``name`` a second name of the file ``source`` (a hard link), in one step: what
    stood at ``name`` (a concurrent run's copy) is replaced, never written into. False where
    the filesystem does not allow it (another filesystem, no hard links)."""
    while True:
        temporary = name.with_name(f".{name.name}.{secrets.token_hex(4)}.link")
        try:
            os.link(source, temporary)
            break
        except FileExistsError:
            continue
        except OSError:  # EXDEV, EPERM or EOPNOTSUPP, EMLINK...
            return False
    try:
        os.replace(temporary, name)
    except OSError:
        temporary.unlink(missing_ok=True)
        return False
    return True


def audit_home(layout: RunLayout, identity: tuple[int, int]) -> Path | None:
    """The directory that holds this run's audit trace now (the file whose device and inode
    are ``identity``): its step's audit directory, or the one under ``previous/`` where a
    later run of the step moved it; None when it is in neither."""
    name = layout.audit_trace_file.name
    archived = sorted((layout.audit_dir / "previous").glob("*/"), reverse=True)
    for directory in (layout.audit_dir, *archived):
        try:
            status = os.stat(directory / name)
        except OSError:
            continue
        if (status.st_dev, status.st_ino) == identity:
            return directory
    return None


def _archive_previous(audit_dir: Path, files: tuple[Path, ...]) -> None:
    existing = [f for f in files if f.exists()]
    if not existing:
        return
    newest = max(f.stat().st_mtime for f in existing)
    base = datetime.fromtimestamp(newest).strftime("%Y%m%d_%H%M%S")
    attempt = 1
    while True:
        target = audit_dir / "previous" / (base if attempt == 1 else f"{base}_{attempt}")
        try:
            target.mkdir(parents=True)
            break
        except FileExistsError:
            attempt += 1
    for f in existing:
        try:
            f.rename(target / f.name)
        except FileNotFoundError:  # a concurrent run of the same step moved it first
            pass
