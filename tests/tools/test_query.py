"""``tracebus query``: SQL over real runs made here, as a user runs the command."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio

import tracebus
from tests.conftest import Quiet

from ..cli import assert_one_line_error, run_tracebus
from . import runs


def query_json(*args: str | Path) -> list[dict[str, Any]]:
    done = run_tracebus("query", *args, "--json")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def agent_run(out: Path, answer: str, fail_search: bool = False) -> None:
    """A node with a child that calls a model and logs; the child fails when told to."""

    async def main() -> None:
        async with Quiet.Observer(
            "step_10_agent", out, total_nodes=2, capture_logging="WARNING"
        ) as obs:
            async with obs.node("answer") as node:
                await node.usage("large-model", input_tokens=1000, output_tokens=200, cost_usd=0.01)
                try:
                    async with obs.node("search") as child:
                        logging.getLogger("agent.tools").warning("backend slow")
                        await child.usage("small-model", 300, 40, 0.0004)
                        if fail_search:
                            raise TimeoutError("search timed out")
                except TimeoutError:
                    pass
                node.output(answer)

    anyio.run(main)


def test_runs_nodes_usage_and_logs_of_several_runs(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    agent_run(out, "forty-two")
    agent_run(out, "forty-three", fail_search=True)
    with Quiet.SyncObserver("step_10_agent", out, total_nodes=2) as live:
        live.node_start("answer", 0)
        live.flush()
        in_progress = query_json(
            out, "SELECT status, nodes_unfinished, nodes_ok FROM runs ORDER BY started"
        )
    assert in_progress == [
        {"status": "complete", "nodes_unfinished": 0, "nodes_ok": 2},
        {"status": "complete", "nodes_unfinished": 0, "nodes_ok": 1},
        {"status": "running", "nodes_unfinished": 1, "nodes_ok": 0},
    ]
    listed = query_json(
        out,
        "SELECT workflow_id, status, nodes_failed, tokens, round(cost_usd, 6) AS cost "
        "FROM runs ORDER BY started",
    )
    assert listed[:2] == [
        {"workflow_id": "step_10_agent", "status": "complete", "nodes_failed": 0}
        | {"tokens": 1540, "cost": 0.0104},
        {"workflow_id": "step_10_agent", "status": "complete", "nodes_failed": 1}
        | {"tokens": 1540, "cost": 0.0104},
    ]
    nodes = query_json(
        out,
        "SELECT n.node_id, n.attempt, n.status, n.parent_id, n.tokens, n.error, n.output_hash "
        "FROM nodes n JOIN runs r USING (run_id) WHERE r.nodes_unfinished = 0 "
        "ORDER BY r.started, n.started",
    )
    assert nodes == [
        {"node_id": "answer", "attempt": 1, "status": "success", "parent_id": None}
        | {"tokens": 1200, "error": None, "output_hash": tracebus.hash_output("forty-two")},
        {"node_id": "search", "attempt": 1, "status": "success", "parent_id": "answer"}
        | {"tokens": 340, "error": None, "output_hash": None},
        {"node_id": "answer", "attempt": 1, "status": "success", "parent_id": None}
        | {"tokens": 1200, "error": None, "output_hash": tracebus.hash_output("forty-three")},
        {"node_id": "search", "attempt": 1, "status": "failed", "parent_id": "answer"}
        | {"tokens": 340, "error": "TimeoutError: search timed out", "output_hash": None},
    ]
    usage = query_json(
        out,
        "SELECT model, count(*) AS calls, sum(tokens) AS tokens, round(sum(cost_usd), 6) AS cost "
        "FROM usage GROUP BY model ORDER BY model",
    )
    assert usage == [
        {"model": "large-model", "calls": 2, "tokens": 2400, "cost": 0.02},
        {"model": "small-model", "calls": 2, "tokens": 680, "cost": 0.0008},
    ]
    logs = query_json(out, "SELECT node_id, level, logger, message FROM logs")
    assert (
        logs
        == [
            {"node_id": "search", "level": "WARNING", "logger": "agent.tools"}
            | {"message": "backend slow"}
        ]
        * 2
    )


def test_attempts_pair_starts_with_their_ends(retry_dir: Path) -> None:
    rows = query_json(
        retry_dir,
        "SELECT node_id, attempt, status, duration_seconds, cost_usd, error, reason, "
        "output_summary FROM nodes ORDER BY node_index, node_id, attempt",
    )
    assert [(r["node_id"], r["attempt"], r["status"]) for r in rows] == [
        ("fetch", 1, "failed"),
        ("fetch", 2, "success"),
        ("parse", 1, "success"),
        ("upload", 1, "failed"),
        ("upload", 2, "failed"),
        ("cache", 1, "skipped"),
    ]
    assert rows[1]["duration_seconds"] == 0.1 and rows[1]["cost_usd"] == 0.001
    assert rows[1]["output_summary"] == {"bytes": 10}
    assert rows[0]["error"] == "TimeoutError: upstream slow"
    assert rows[5]["reason"] == "up to date"


def test_table_and_csv_output(tmp_path: Path) -> None:
    out = runs.failure_run(tmp_path / "failure")
    sql = "SELECT node_id, status, error FROM nodes ORDER BY node_index"
    done = run_tracebus("query", out, sql)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["node_id", "status", "error"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["a", "success", "NULL"]
    assert lines[3].split() == ["b", "failed", "ValueError:", "bad", "input", "in", "b"]
    assert lines[-1] == "(5 rows)"
    done = run_tracebus("query", out, sql, "--csv")
    assert done.returncode == 0
    assert list(csv.reader(io.StringIO(done.stdout)))[:3] == [
        ["node_id", "status", "error"],
        ["a", "success", ""],
        ["b", "failed", "ValueError: bad input in b"],
    ]


def test_seed_traces_and_several_directories(tmp_path: Path) -> None:
    seed = runs.seed_run(tmp_path / "seed")
    success = runs.success_run(tmp_path / "success")
    rows = query_json(
        seed,
        success,
        "SELECT workflow_id, status, nodes_ok, nodes_failed, round(cost_usd, 4) AS cost,"
        " run_id = trace AS named_by_file, (SELECT count(*) FROM nodes n WHERE n.run_id = r.run_id)"
        " AS attempts FROM runs r ORDER BY workflow_id",
    )
    assert rows == [
        {"workflow_id": "step_02_populate", "status": "complete", "nodes_ok": 3}
        | {"nodes_failed": 1, "cost": 0.42, "named_by_file": True, "attempts": 4},
        {"workflow_id": "step_03_load", "status": "complete", "nodes_ok": 4}
        | {"nodes_failed": 0, "cost": 0.035, "named_by_file": False, "attempts": 4},
    ]
    slowest = query_json(
        seed, "SELECT node_id, duration_seconds FROM nodes ORDER BY duration_seconds DESC LIMIT 1"
    )
    assert slowest == [{"node_id": "node_2", "duration_seconds": 2.0}]


def test_a_torn_last_line_is_left_out(torn_dir: Path, success_dir: Path) -> None:
    sql = "SELECT count(*) AS lines, count(DISTINCT event_type) AS kinds FROM events"
    assert query_json(torn_dir, sql) == query_json(success_dir, sql)


def test_a_directory_without_runs_has_empty_views(tmp_path: Path) -> None:
    for view in ("runs", "nodes", "events", "usage", "logs"):
        assert query_json(tmp_path, f"SELECT * FROM {view}") == []


def test_bad_sql_and_missing_directories_are_one_line_errors(tmp_path: Path) -> None:
    out = runs.success_run(tmp_path / "success")
    done = run_tracebus("query", out, "SELECT nope FROM nodes")
    assert_one_line_error(done, "tracebus query: error: Binder Error:", '"nope" not found')
    done = run_tracebus("query", out, "SELEC 1")
    assert_one_line_error(done, "tracebus query: error: Parser Error:")
    done = run_tracebus("query", tmp_path / "nowhere", "SELECT 1")
    assert_one_line_error(done, "tracebus query: error:", "no such directory")


def test_without_duckdb_the_error_says_how_to_install_it(tmp_path: Path) -> None:
    out = runs.success_run(tmp_path / "success")
    shim = (
        "import runpy, sys\n"
        "sys.modules['duckdb'] = None  # what an environment without the extra imports\n"
        "runpy.run_module('tracebus', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", shim, "query", str(out), "SELECT 1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line_error(
        done,
        "tracebus query: error: DuckDB is not installed;",
        "pip install 'tracebus[query]'",
    )
    help_done = subprocess.run(
        [sys.executable, "-c", shim, "query", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert help_done.returncode == 0 and "The views: runs" in help_done.stdout


def test_the_docs_list_every_column_of_every_view(success_dir: Path) -> None:
    page = (Path(__file__).parents[2] / "docs" / "reading-runs.md").read_text()
    for view in ("runs", "nodes", "usage", "logs"):
        (row,) = re.findall(rf"^\| `{view}` \| [^|]+ \| (.+) \|$", page, flags=re.M)
        documented = re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", row))
        described = query_json(success_dir, f"SELECT column_name FROM (DESCRIBE {view})")
        assert [column["column_name"] for column in described] == documented, view
