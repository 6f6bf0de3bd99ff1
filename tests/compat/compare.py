"""What a user of the old observer sees of a run, read from its output directory and console,
normalised (times, pids, ids, stamps, the directory the run was made in) for comparison.

Each ``compare_*`` returns the differences as sentences, empty when the tracebus run shows
everything the old observer's run showed: every field it wrote, under the same name and
type, its log details in its order (added fields may follow), every line of its header and
summary (added lines may come between), its files in their places with their modes.
"""

from __future__ import annotations

import json
import re
import stat
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RULE = "=" * 80
_EVENT_START = re.compile(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[.\d]*(?:\+00:00)?\] [A-Z_]+")
# the old bar's redraws, copied into the logs: "\r<bar text>" up to the next line or redraw
_BAR_REDRAW = re.compile(r"\r.*?(?=\[\d{4}-\d\d-\d\dT|\r|$)")
_STAMP = re.compile(r"\d{8}_\d{6}(?:_\d+)?")
_ISO = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d)?")
_BAR_COUNT = re.compile(r"\| \[(\d+)/(\d+)\]")
#: Values that differ from run to run: compared by type only.
VOLATILE = {
    "timestamp",
    "epoch_seconds",
    "pid",
    "duration_seconds",
    "total_time_seconds",
    "start_time",
    "end_time",
}


@dataclass(frozen=True)
class LogLine:
    event_type: str
    node_id: str | None
    message: str | None
    details: dict[str, Any]

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.event_type, self.node_id)


def parse_log(text: str) -> tuple[list[LogLine], list[str]]:
    """The event lines of a log, and its other lines (header, summary) without bar redraws."""
    events: list[LogLine] = []
    others: list[str] = []
    for raw in text.split("\n"):
        line = _BAR_REDRAW.sub("", raw)
        found = _EVENT_START.search(line)
        if found is None:
            others.append(line)
            continue
        head, _, details = line[found.start() :].partition(" | ")
        match = re.fullmatch(r"\[[^\]]+\] ([A-Z_]+)(.*)", head)
        assert match is not None, line
        event_type, rest = match.groups()
        if event_type == "PROGRESS":
            continue
        node_id = message = None
        if rest.startswith(": "):
            message = rest[2:]
        elif rest.startswith(" "):
            node_id = rest[1:]
        events.append(LogLine(event_type, node_id, message, json.loads(details)))
    return events, others


def blocks(lines: list[str]) -> list[list[str]]:
    """The header and summary blocks: the lines between two rules."""
    found: list[list[str]] = []
    inside: list[str] | None = None
    for line in lines:
        if line == RULE:
            if inside is None:
                inside = []
            else:
                found.append(inside)
                inside = None
        elif inside is not None:
            inside.append(line)
    return found


def bar_counts(text: str) -> list[tuple[int, int]]:
    """Every ``[n/total]`` the progress bar showed, in order."""
    return [(int(n), int(total)) for n, total in _BAR_COUNT.findall(text)]


class Normaliser:
    """Replaces what differs between two runs of the same workflow with placeholders."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def text(self, value: str) -> str:
        value = value.replace(self.root, "<ROOT>")
        value = _STAMP.sub("<STAMP>", value)
        value = _ISO.sub("<TIME>", value)
        value = re.sub(r"PID: \d+", "PID: <PID>", value)
        return re.sub(r"\d+\.\d\ds \(\d+\.\d\dm\)|\d+\.\d\ds", "<SECONDS>", value)

    def value(self, key: str, value: Any) -> Any:
        if key in VOLATILE:
            return f"<{type(value).__name__}>"
        if key == "node_times":
            return {k: type(v).__name__ for k, v in value.items()}
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(k, v) for k, v in value.items()}
        return value

    def path(self, path: Path) -> str:
        return _STAMP.sub("<STAMP>", str(path.relative_to(self.root)))


def compare_fields(
    what: str,
    seed: dict[str, Any],
    ours: dict[str, Any],
    *,
    ordered: bool,
    seed_norm: Normaliser,
    our_norm: Normaliser,
) -> list[str]:
    """Every field of ``seed`` in ``ours``: same name, type and (normalised) value; with
    ``ordered``, first and in the same order."""
    problems = []
    for key, value in seed.items():
        if key not in ours:
            problems.append(f"{what}: no {key!r} (old: {value!r})")
        elif type(ours[key]) is not type(value):
            problems.append(
                f"{what}: {key!r} is {type(ours[key]).__name__}, was {type(value).__name__}"
            )
        elif seed_norm.value(key, value) != our_norm.value(key, ours[key]):
            problems.append(f"{what}: {key!r} is {ours[key]!r}, was {value!r}")
    if ordered and not problems and list(ours)[: len(seed)] != list(seed):
        problems.append(f"{what}: fields in the order {list(ours)}, were {list(seed)}")
    return problems


def _paired(seed: list[Any], ours: list[Any], key: Any) -> tuple[list[tuple[Any, Any]], list[str]]:
    """Pairs the entries of two runs by ``key`` (event type and node), in order of appearance."""
    mine: dict[Any, list[Any]] = defaultdict(list)
    for entry in ours:
        mine[key(entry)].append(entry)
    pairs, problems = [], []
    for entry in seed:
        if mine[key(entry)]:
            pairs.append((entry, mine[key(entry)].pop(0)))
        else:
            problems.append(f"no line for {key(entry)}")
    return pairs, problems


def compare_logs(
    seed_text: str, our_text: str, seed_norm: Normaliser, our_norm: Normaliser, what: str
) -> list[str]:
    seed_events, seed_rest = parse_log(seed_text)
    our_events, our_rest = parse_log(our_text)
    pairs, problems = _paired(seed_events, our_events, lambda line: line.key)
    problems = [f"{what}: {p}" for p in problems]
    if not seed_events:
        problems.append(f"{what}: the old log holds no event line: nothing compared")
    if len(our_events) != len(seed_events):
        problems.append(f"{what}: {len(our_events)} event lines, were {len(seed_events)}")
    for old, new in pairs:
        label = f"{what} {old.event_type} {old.node_id or ''}".rstrip()
        if seed_norm.value("message", old.message) != our_norm.value("message", new.message):
            problems.append(f"{label}: message {new.message!r}, was {old.message!r}")
        problems += compare_fields(
            label, old.details, new.details, ordered=True, seed_norm=seed_norm, our_norm=our_norm
        )
    problems += compare_blocks(what, blocks(seed_rest), blocks(our_rest), seed_norm, our_norm)
    return problems


def compare_blocks(
    what: str,
    seed: list[list[str]],
    ours: list[list[str]],
    seed_norm: Normaliser,
    our_norm: Normaliser,
) -> list[str]:
    """Each old block has a block of its own, in order, holding its lines in order (tracebus
    may add blocks, such as the header and summary in the audit log, and lines)."""
    problems = []
    remaining = iter(ours)
    for old in seed:
        wanted = [seed_norm.text(line) for line in old]
        for new in remaining:
            shown = iter(our_norm.text(line) for line in new)
            if all(any(line == have for have in shown) for line in wanted):
                break
        else:
            problems.append(f"{what}: no block holds {wanted} (in order) after the previous")
    return problems


def compare_traces(
    seed: list[dict[str, Any]],
    ours: list[dict[str, Any]],
    seed_norm: Normaliser,
    our_norm: Normaliser,
    what: str,
) -> list[str]:
    pairs, problems = _paired(seed, ours, lambda e: (e["event_type"], e.get("node_id")))
    problems = [f"{what}: {p}" for p in problems]
    if not seed:
        problems.append(f"{what}: the old trace is empty: nothing compared")
    if len(ours) != len(seed):
        problems.append(f"{what}: {len(ours)} lines, were {len(seed)}")
    for old, new in pairs:
        label = f"{what} {old['event_type']} {old.get('node_id') or ''}".rstrip()
        problems += compare_fields(
            label, old, new, ordered=False, seed_norm=seed_norm, our_norm=our_norm
        )
    return problems


def compare_layouts(seed_root: Path, our_root: Path) -> list[str]:
    """The same files and directories, with the same modes; tracebus may add only the audit
    directories' ``previous/`` (where a rerun moves the last run's audit files)."""
    seed_norm, our_norm = Normaliser(seed_root), Normaliser(our_root)
    seed_modes = _modes(seed_root, seed_norm)
    our_modes = _modes(our_root, our_norm)
    problems = []
    for path, modes in sorted(seed_modes.items()):
        if path not in our_modes:
            problems.append(f"no {path}")
        elif our_modes[path] != modes:
            shown = sorted(oct(m) for m in our_modes[path])
            problems.append(f"{path} has mode {shown}, was {sorted(oct(m) for m in modes)}")
    for path in sorted(set(our_modes) - set(seed_modes)):
        if "/previous" not in path:
            problems.append(f"{path} is new")
    return problems


def _modes(root: Path, norm: Normaliser) -> dict[str, set[int]]:
    modes: dict[str, set[int]] = defaultdict(set)
    for path in root.rglob("*"):
        name = norm.path(path)
        if "/previous/" in name:  # what a rerun moved aside: its own files, as they were
            name = re.sub(r"/previous/[^/]+", "/previous/<RUN>", name)
        modes[name].add(stat.S_IMODE(path.stat().st_mode))
    return modes


def read_logs(root: Path, pattern: str) -> str:
    """The logs of every run in ``root`` matching ``pattern``, one after the other."""
    return "\n".join(p.read_text() for p in sorted(root.glob(pattern)))


def read_traces(root: Path, pattern: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for p in sorted(root.glob(pattern))
        for line in p.read_text().splitlines()
        if line
    ]
