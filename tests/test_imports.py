"""What ``import tracebus`` and the command line load: the heavy parts only when a use needs
them, and ``tracebus --help`` the same whether or not the subcommands' modules are loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tracebus import cli

ROOT = Path(__file__).resolve().parent.parent

#: What a plain ``import tracebus`` must not load: the progress bar, TLS, nats-py, and the
#: packages of the collector service (its client among them), NATS and the read-back tools.
HEAVY = ("tqdm", "ssl", "nats")
HEAVY_PARTS = ("service", "nats", "tools")


def modules_loaded_by(code: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(result.stdout.split())


def heavy(modules: set[str]) -> list[str]:
    return sorted(
        name
        for name in modules
        if name.split(".")[0] in HEAVY
        or (name.startswith("tracebus.") and name.split(".")[1].lstrip("_") in HEAVY_PARTS)
    )


def test_import_tracebus_loads_no_heavy_part() -> None:
    loaded = modules_loaded_by("import tracebus")
    assert "tracebus" in loaded
    assert heavy(loaded) == []


def test_the_check_sees_a_heavy_part() -> None:
    assert heavy(modules_loaded_by("import tracebus\ntracebus.connect")) != []


def test_summary_help_loads_neither_the_service_nor_nats() -> None:
    loaded = modules_loaded_by(
        "from tracebus.cli import main\n"
        "try:\n    main(['summary', '--help'])\nexcept SystemExit:\n    pass"
    )
    assert "tracebus._tools.cli" in loaded or "tracebus.tools.cli" in loaded
    assert [name for name in heavy(loaded) if "tools" not in name] == []


def test_help_lists_every_command_as_its_own_module_describes_it() -> None:
    lazy = cli.build_parser("").format_help()
    assert lazy == cli.build_parser().format_help()
    for name in ["demo", *cli.COMMANDS]:
        assert f"    {name} " in lazy


@pytest.mark.parametrize("command", ["demo", *cli.COMMANDS])
def test_each_command_shows_its_own_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main([command, "--help"])
    assert raised.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: tracebus {command} [-h]")


def test_serve_help_has_the_nats_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    assert "--nats URL" in capsys.readouterr().out


def test_the_import_benchmark_reports_every_command_against_bare_python(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "imports.py"), "--rounds", "1"]
        + ["--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: a target missed on a busy machine
    report = json.loads((tmp_path / "imports.json").read_text())
    rows = {row["command"]: row for row in report["rows"]}
    assert list(rows)[0] == "python -c pass"
    assert {"import tracebus", "tracebus summary --help"} <= set(rows)
    assert rows["import tracebus"]["target_over_bare_ms"] == 30.0
    assert rows["tracebus summary --help"]["target_over_bare_ms"] == 60.0
    assert report["targets_met"] == (result.returncode == 0)
    assert "tracebus summary --help" in result.stdout


def test_watch_help_loads_no_web_server() -> None:
    loaded = modules_loaded_by(
        "from tracebus.cli import main\n"
        "try:\n    main(['watch', '--help'])\nexcept SystemExit:\n    pass"
    )
    assert "tracebus._tools._watch.cli" in loaded
    assert sorted(name for name in loaded if name.split(".")[0] in ("starlette", "uvicorn")) == []
