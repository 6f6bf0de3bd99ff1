from __future__ import annotations

from pathlib import Path

import pytest

import tracebus


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(b'{"seq": 1}\n{"seq": 2}\n{"seq": 3, "event_ty')
    assert [e["seq"] for e in tracebus.read_trace(trace)] == [1, 2]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(b'{"seq": 1}\n\n{"seq": 2}\n')
    assert [e["seq"] for e in tracebus.read_trace(trace)] == [1, 2]


def test_corrupt_middle_line_names_file_and_line(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(b'{"seq": 1}\nnot json\n{"seq": 3}\n')
    with pytest.raises(tracebus.TraceFormatError, match=r"t\.jsonl:2: not a JSON object"):
        list(tracebus.read_trace(trace))


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(tracebus.read_trace(tmp_path / "absent.jsonl"))
