from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tracebus import InvalidIdError
from tracebus._layout import create_layout, step_number, validate_id


@pytest.mark.parametrize(
    ("workflow_id", "step"),
    [("step_04_populate_mpd", "04"), ("x_step_12", "12"), ("unknown_workflow", "00")],
)
def test_step_number_comes_from_the_workflow_id(workflow_id: str, step: str) -> None:
    assert step_number(workflow_id) == step


@pytest.mark.parametrize("good", ["a", "step_01_x", "A.b-c_9", "9" * 128])
def test_safe_ids_pass(good: str) -> None:
    assert validate_id(good) == good


@pytest.mark.parametrize("bad", ["..", "/abs", "a\\b", "-flag", "x" * 129, "a b", ""])
def test_unsafe_ids_name_the_field(bad: str) -> None:
    with pytest.raises(InvalidIdError, match=r"invalid run_id .*file names"):
        validate_id(bad, "run_id")


def test_layout_claims_fresh_names_for_runs_in_the_same_second(tmp_path: Path) -> None:
    started = datetime(2026, 1, 2, 3, 4, 5)
    first = create_layout(tmp_path, "step_03_a", "r1", started)
    second = create_layout(tmp_path, "step_03_a", "r2", started)
    assert first.trace_file.name == "trace_step_03_20260102_030405.jsonl"
    assert second.trace_file.name == "trace_step_03_20260102_030405_2.jsonl"
    assert second.log_file.name == "execution_step_03_a_20260102_030405_2.log"
    # another workflow of the same step shares the trace name pattern but not the file
    third = create_layout(tmp_path, "step_03_b", "r3", started)
    assert third.trace_file.name == "trace_step_03_20260102_030405_3.jsonl"
    assert third.log_file.name == "execution_step_03_b_20260102_030405_3.log"


def test_layout_rejects_bad_ids_before_creating_anything(tmp_path: Path) -> None:
    with pytest.raises(InvalidIdError):
        create_layout(tmp_path / "out", "ok", "../../etc", datetime.now())
    assert not (tmp_path / "out").exists()
