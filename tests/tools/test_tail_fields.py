"""tail and the fields of a line: a field of the wrong type is named, never a traceback,
and the fields the formatter reads are those the trace lines have."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tracebus._tools._lines import line_types
from tracebus._tools._tail_text import ShownFields, TailLine, format_event

from . import runs

BAD_FIELDS = [
    ("usage", "counters", [1, 2], "counters is not an object"),
    ("usage", "counters", "many", "counters is not an object"),
    ("usage", "counters", 7, "counters is not an object"),
    ("usage", "input_tokens", "300", "input_tokens is not a whole number"),
    ("node_start", "node_id", 5, "node_id is not a string"),
    ("workflow_start", "total_nodes", "ten", "total_nodes is not a whole number"),
    ("note", "fields", [1], "fields is not an object"),
    ("node_retry", "delay_seconds", "soon", "delay_seconds is not a number"),
    ("log", "exception", 3, "exception is not a string"),
    ("node_success", "cost_usd", True, "cost_usd is not a number"),
]


@pytest.mark.parametrize(("kind", "name", "value", "problem"), BAD_FIELDS)
def test_a_field_of_the_wrong_type_is_named_after_the_lines_before_it(
    tmp_path: Path, kind: str, name: str, value: Any, problem: str
) -> None:
    seed = runs.SeedWriter(tmp_path / "seed", "wf", total_nodes=1)
    good = {"event_type": "note", "epoch_seconds": seed.tick(1), "message": "before"}
    bad = {"event_type": kind, "epoch_seconds": seed.tick(1), "node_id": "n", name: value}
    seed.write(json.dumps(good) + "\n" + json.dumps(bad) + "\n" + json.dumps(good) + "\n")
    seed.complete()
    done = subprocess.run(
        [sys.executable, "-m", "tracebus", "tail", str(seed.trace)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == f"tracebus tail: error: {seed.trace}:3: {problem}\n"
    assert [line.split()[1:3] for line in done.stdout.splitlines()] == [
        ["workflow_start", "wf:"],
        ["note", "before"],
    ]


def test_a_usage_line_whose_counters_is_no_object_shows_without_them() -> None:
    usage = {"event_type": "usage", "epoch_seconds": 0.0, "model": "big", "counters": [1, 2]}
    assert format_event(usage).endswith("usage              big: 0 in, 0 out tokens")


def test_the_shown_fields_are_fields_of_trace_lines() -> None:
    shown = set(ShownFields.__annotations__)
    assert shown <= set(line_types())
    struct: Any = TailLine
    assert struct.__struct_fields__ == tuple(line_types())
    assert all(getattr(TailLine(), name) is msgspec.UNSET for name in shown)
