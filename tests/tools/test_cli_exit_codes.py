"""The commands as a user runs them: ``python -m tracebus ...`` in a subprocess."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ..cli import TRACEBUS, assert_one_line_error, run_tracebus
from . import runs

COMMANDS = ("summary", "export", "timeline", "tail")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_documents_run_and_exit_codes(command: str) -> None:
    done = run_tracebus(command, "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "RUN is a trace file (.jsonl)" in text
    if command == "tail":  # tail waits for a run to begin in an output directory
        assert "or an output directory, which need not exist yet: its run in progress" in text
        assert "with --latest, its newest run, ended or not" in text
    else:
        assert "an output directory, meaning its latest run" in text
    assert "exit codes: 0 ok; 1 the run failed or has failed nodes, where --check is given" in text
    assert "2 bad usage or unreadable input" in text


def test_exit_0_and_1(tmp_path: Path) -> None:
    success = runs.success_run(tmp_path / "success")
    failure = runs.failure_run(tmp_path / "failure")
    assert run_tracebus("summary", success, "--check").returncode == 0
    assert run_tracebus("summary", failure).returncode == 0
    assert run_tracebus("summary", failure, "--check").returncode == 1
    for args in (
        ("export", failure, "--format", "chrome", "-o", tmp_path / "f.json"),
        ("export", failure, "--format", "otlp", "-o", tmp_path / "f.otlp.jsonl"),
        ("timeline", failure, "-o", tmp_path / "f.html"),
    ):
        assert run_tracebus(*args).returncode == 0
        checked = run_tracebus(*args, "--check")
        assert checked.returncode == 1 and checked.stderr == ""
    assert (tmp_path / "f.html").stat().st_size > 0


def test_missing_run_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for command in ("summary", "timeline", "tail --latest"):
        done = run_tracebus(*command.split(), missing)
        name = command.split()[0]
        assert_one_line_error(done, f"tracebus {name}: error:", "no such file or directory")
    done = run_tracebus("export", missing, "--format", "chrome")
    assert_one_line_error(done, "no such file or directory")


def test_directory_that_is_not_a_run(tmp_path: Path) -> None:
    assert_one_line_error(run_tracebus("summary", tmp_path), "not a run")


def test_corrupt_trace_names_the_line(tmp_path: Path) -> None:
    out = runs.success_run(tmp_path / "corrupt")
    trace = runs.only_trace(out)
    lines = trace.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:30] + "\n"
    trace.write_text("".join(lines))
    for command in ("summary", "tail"):
        assert_one_line_error(run_tracebus(command, trace), f"{trace}:2: not a JSON object")


def test_binary_file_is_unreadable_input(tmp_path: Path) -> None:
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"\x00\xff\xfe garbage\n" * 3)
    assert_one_line_error(run_tracebus("summary", junk), "junk.jsonl:1: not a JSON object")


def test_unwritable_output_is_a_one_line_error(tmp_path: Path) -> None:
    out = runs.success_run(tmp_path / "ok")
    done = run_tracebus(
        "export", out, "--format", "chrome", "-o", tmp_path / "no" / "such" / "x.json"
    )
    assert_one_line_error(done, "tracebus export: error:", "No such file or directory")


def test_bad_usage_exits_2_without_traceback(tmp_path: Path) -> None:
    out = runs.success_run(tmp_path / "ok")
    for args in (
        ("export", out),  # --format is required
        ("export", out, "--format", "zipkin"),
        ("summary",),
        ("tail", out, "--timeout", "-1"),
        ("timeline", out, "--colour"),
    ):
        done = run_tracebus(*args)
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("tracebus") and "error:" in last


def test_torn_run_warns_on_stderr_and_succeeds(tmp_path: Path) -> None:
    out = runs.torn_run(tmp_path / "torn")
    done = run_tracebus("export", out, "--format", "chrome", "-o", tmp_path / "t.json")
    assert done.returncode == 0
    assert "tracebus export: warning:" in done.stderr and "torn last line" in done.stderr


def test_export_to_stdout(tmp_path: Path) -> None:
    out = runs.seed_run(tmp_path / "seed")
    done = run_tracebus("export", out, "--format", "chrome")
    assert done.returncode == 0 and done.stdout.startswith('{"traceEvents":[')


def test_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    out = runs.synthetic_run(tmp_path / "many", nodes=2000, workers=8)
    reader = subprocess.Popen(
        [*TRACEBUS, "tail", "--latest", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.readline()
    reader.stdout.close()  # like `| head -1`
    code = reader.wait(timeout=120)
    err = reader.stderr.read().decode()
    reader.stderr.close()
    assert code == 141 and err == ""
