from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tracebus import InvalidIdError
from tracebus._layout import (
    STEP_DIR,
    TRACE_NAME,
    audit_file,
    create_layout,
    step_number,
    validate_id,
)


@pytest.mark.parametrize(
    ("workflow_id", "step"),
    [("step_04_populate_mpd", "04"), ("x_step_12", "12"), ("unknown_workflow", "00")],
)
def test_step_number_comes_from_the_workflow_id(workflow_id: str, step: str) -> None:
    assert step_number(workflow_id) == step


@pytest.mark.parametrize(
    "good",
    [
        "a",
        "step_01_x",
        "A.b-c_9",
        "simple analysis workflow",  # an orchestrator's workflow name, as its schema allows
        "step_02 données de l'élève",
        "шаг_03 анализ",
        "ステップ04",
        "می‌خواهم",  # Persian, with its zero-width non-joiner
        "e\u0301t\u00e9",  # a combining accent
        "run: 2026-01-02 (retry #3), 100% ~=*>",
        " leading and trailing spaces ",
        "x" * 200,
        "é" * 100,  # 200 bytes in UTF-8
    ],
)
def test_ids_with_spaces_and_any_script_pass(good: str) -> None:
    assert validate_id(good) == good


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "it is empty"),
        ("..", "it starts with '.'"),
        ("../etc", "it starts with '.'"),
        (".hidden", "it starts with '.'"),
        ("-flag", "it starts with '-'"),
        ("a..b", "it holds '..'"),
        ("a/b", "it holds the path separator '/'"),
        ("/abs", "it holds the path separator '/'"),
        ("a\\b", "it holds the path separator '\\\\'"),
        ("a\x00b", "it holds the control character U+0000"),
        ("a\tb", "it holds the control character U+0009"),
        ("line\n", "it holds the control character U+000A"),
        ("a\rb", "it holds the control character U+000D"),
        ("a\x1b[31mb", "it holds the control character U+001B"),
        ("a\x7fb", "it holds the control character U+007F"),
        ("a\x85b", "it holds the control character U+0085"),
        ("a\u2028b", "it holds the line separator U+2028"),
        ("a\u2029b", "it holds the paragraph separator U+2029"),
        ("a\ud800b", "it holds the lone surrogate U+D800"),
        ("x" * 201, "it is 201 bytes long in UTF-8, more than 200"),
        ("é" * 101, "it is 202 bytes long in UTF-8, more than 200"),
    ],
)
def test_unsafe_ids_are_refused_with_the_field_value_and_reason(bad: str, reason: str) -> None:
    with pytest.raises(InvalidIdError) as refused:
        validate_id(bad, "run_id")
    shown = repr(bad) if len(bad) <= 80 else f"{bad[:60]!r}... ({len(bad)} characters)"
    assert str(refused.value) == f"invalid run_id {shown}: {reason} (it becomes part of file names)"


def test_an_id_that_is_not_a_str_is_refused() -> None:
    with pytest.raises(InvalidIdError, match="^workflow_id must be a str, not int$"):
        validate_id(12)


def test_the_longest_ids_make_every_file_of_two_runs_in_the_same_second(tmp_path: Path) -> None:
    workflow_id, run_id = "step_05 " + "é" * 96, "r" * 200  # 200 bytes each
    started = datetime(2026, 1, 2, 3, 4, 5)
    first = create_layout(tmp_path, workflow_id, run_id, started)
    second = create_layout(tmp_path, workflow_id, run_id, started)
    assert second.log_file.name == f"execution_{workflow_id}_20260102_030405_2.log"
    for layout in (first, second):
        assert layout.log_file.is_file() and layout.trace_file.is_file()
        assert layout.audit_dir == tmp_path / "audit" / "step_05"


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


def test_the_names_a_layout_makes_are_the_names_the_readers_parse(tmp_path: Path) -> None:
    started = datetime(2026, 3, 4, 5, 6, 7)
    first = create_layout(tmp_path, "step_07_fetch", "r1", started)
    second = create_layout(tmp_path, "step_07_fetch", "r2", started)
    stamped = [TRACE_NAME.fullmatch(run.trace_file.name) for run in (first, second)]
    assert [(m["step"], m["stamp"], m["second"], m["nth"]) for m in stamped if m] == [
        ("07", "20260304_050607", "20260304_050607", None),
        ("07", "20260304_050607_2", "20260304_050607", "2"),
    ]
    step_dir = STEP_DIR.fullmatch(second.audit_dir.name)
    assert step_dir is not None and step_dir["step"] == "07"
    files = (second.audit_trace_file, second.audit_log_file, second.metadata_file)
    assert [audit_file(f.name) for f in files] == [
        ("trace", "07"),
        ("log", "07"),
        ("metadata", "07"),
    ]
    for other in ("trace_07.json", "metadata_07.jsonl", "log_7.txt", "trace_x.jsonl"):
        assert audit_file(other) is None
