"""``tracebus diff``: two real runs of one workflow compared, as a user runs the command."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tracebus
from tests.conftest import Quiet

from ..cli import assert_one_line_error, run_tracebus
from . import runs


@dataclass
class Plan:
    """One run of the ``step_09_compare`` workflow: per node, its seconds, its output (None:
    it fails) and the tokens of its model calls; durations are given, not slept."""

    nodes: dict[str, tuple[float, str | None]]
    tokens: dict[str, int] = field(default_factory=dict)


def write_run(out: Path, plan: Plan) -> Path:
    with Quiet.SyncObserver("step_09_compare", out, total_nodes=len(plan.nodes)) as obs:
        for index, (node_id, (seconds, output)) in enumerate(plan.nodes.items()):
            obs.node_start(node_id, index)
            if node_id in plan.tokens:
                obs.usage("small-model", plan.tokens[node_id], 10, 0.001, node_id=node_id)
            if output is None:
                obs.node_failure(node_id, f"ValueError: {node_id} broke", seconds)
            else:
                summary = {"text": output}
                obs.node_success(node_id, seconds, tracebus.hash_output(output), summary, 0.01)
    return runs.only_trace(out)


BEFORE = Plan(
    {
        "fetch": (0.2, None),
        "parse": (0.3, "rows=3"),
        "score": (0.5, "good"),
        "publish": (0.2, "done"),
        "tiny": (0.01, "x"),
        "legacy": (0.1, "old"),
    },
    tokens={"score": 100},
)
AFTER = Plan(
    {
        "fetch": (0.2, "fetched"),
        "parse": (0.3, None),
        "score": (0.5, "better"),
        "publish": (0.9, "done"),
        "tiny": (0.05, "x"),
        "cleanup": (0.1, "swept"),
    },
    tokens={"score": 250, "cleanup": 20},
)


def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    return write_run(tmp_path / "a", BEFORE), write_run(tmp_path / "b", AFTER)


def diff_json(*args: str | Path) -> tuple[int, dict[str, Any]]:
    done = run_tracebus("diff", *args, "--json")
    assert done.stderr == ""
    result: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, result


def test_diff_prints_each_kind_of_change(tmp_path: Path) -> None:
    a, b = two_runs(tmp_path)
    done = run_tracebus("diff", a, b)
    assert done.returncode == 0 and done.stderr == ""
    out = done.stdout
    assert out.startswith("step_09_compare: run A against run B\n")
    assert f"complete  {a}\n" in out and f"complete  {b}\n" in out
    assert "\nNewly failing (1)\n  parse (was success): ValueError: parse broke\n" in out
    assert "\nNewly passing (1)\n  fetch\n" in out
    assert "\nAdded (1)\n  cleanup (success)\n" in out
    assert "\nRemoved (1)\n  legacy (success)\n" in out
    assert '\nOutput changed (1)\n  score: {"text":"good"} -> {"text":"better"}\n' in out
    # tiny grew 5x but by 40 ms only, under the 0.1 s floor
    assert (
        "\nSlower by 1.5x and 100.0ms or more (1)\n  publish  200.0ms  ->  900.0ms  4.50x\n" in out
    )
    assert "Faster" not in out
    lines = out.splitlines()
    totals = lines[lines.index("Totals") + 1 : lines.index("Totals") + 11]
    assert totals[0].split() == ["A", "B", "change"]
    assert totals[2].split() == ["completed", "5", "5"]
    assert totals[3].split() == ["failed", "1", "1"]
    assert totals[8].split() == ["cost", "$0.0510", "$0.0520", "+$0.0010"]
    assert totals[9].split() == ["tokens", "110", "290", "+180"]
    spend = lines[lines.index("Cost and tokens by node (5)") + 1 :]
    assert spend[0].split() == [
        "cost",
        "A",
        "cost",
        "B",
        "change",
        "tokens",
        "A",
        "tokens",
        "B",
        "change",
    ]
    assert spend[1].split() == ["fetch", "$0.000000", "$0.010000", "+$0.010000", "0", "0"]
    assert spend[3].split() == ["score", "$0.011000", "$0.011000", "110", "260", "+150"]
    models = lines[lines.index("By model (1)") + 1 :][:2]
    assert models[1].split() == ["small-model", "1", "2", "110", "290", "$0.001000", "$0.002000"]


def test_diff_json_has_every_change(tmp_path: Path) -> None:
    a, b = two_runs(tmp_path)
    code, diff = diff_json(a, b)
    assert code == 0
    assert diff["a"]["trace_file"] == str(a) and diff["b"]["status"] == "complete"
    assert diff["added"] == [{"node_id": "cleanup", "status": "success"}]
    assert diff["removed"] == [{"node_id": "legacy", "status": "success"}]
    assert diff["newly_failing"] == [
        {"node_id": "parse", "before": "success", "error": "ValueError: parse broke"}
    ]
    assert diff["newly_passing"] == [{"node_id": "fetch", "before": "failed", "after": "success"}]
    assert diff["status_changed"] == []
    assert diff["output_changed"] == [
        {
            "node_id": "score",
            "a": {"hash": tracebus.hash_output("good"), "summary": {"text": "good"}},
            "b": {"hash": tracebus.hash_output("better"), "summary": {"text": "better"}},
        }
    ]
    assert [row["node_id"] for row in diff["slower"]] == ["publish"]
    assert diff["slower"][0]["a_seconds"] == 0.2 and diff["slower"][0]["b_seconds"] == 0.9
    assert diff["totals"]["nodes_failed"] == {"a": 1, "b": 1, "delta": 0}
    assert diff["totals"]["tokens"] == {"a": 110, "b": 290, "delta": 180}
    (model,) = diff["models"]
    assert model["model"] == "small-model"
    assert model["calls"] == {"a": 1, "b": 2, "delta": 1}
    assert model["input_tokens"] == {"a": 100, "b": 270, "delta": 170}
    assert diff["check"] == {"gates": [], "tripped": []}


def test_check_gates_choose_what_fails_the_diff(tmp_path: Path) -> None:
    a, b = two_runs(tmp_path)
    assert run_tracebus("diff", a, b).returncode == 0
    done = run_tracebus("diff", a, b, "--check")
    assert done.returncode == 1
    assert done.stdout.endswith("\ncheck hash,fail: tripped hash,fail\n")
    code, diff = diff_json(a, b, "--check=slower")
    assert code == 1 and diff["check"] == {"gates": ["slower"], "tripped": ["slower"]}
    assert diff_json(a, b, "--check=slower", "--slower", "5x")[0] == 0
    assert diff_json(a, b, "--check=slower", "--min-seconds", "1")[0] == 0
    code, diff = diff_json(a, b, "--check=fail,slower,hash", "--slower", "5")
    assert code == 1 and diff["check"]["tripped"] == ["hash", "fail"]


def test_a_run_against_itself_differs_in_nothing(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", BEFORE)
    done = run_tracebus("diff", a, a, "--check=hash,fail,slower")
    assert done.returncode == 0
    assert "\nNo node differs.\n" in done.stdout
    assert done.stdout.endswith("\ncheck hash,fail,slower: tripped none\n")


def test_a_newly_failing_node_alone_trips_the_fail_gate(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", Plan({"x": (0.1, "same"), "y": (0.1, "same")}))
    b = write_run(tmp_path / "b", Plan({"x": (0.1, "same"), "y": (0.1, None), "z": (0.1, None)}))
    code, diff = diff_json(a, b, "--check=hash")
    assert code == 0 and diff["output_changed"] == []
    code, diff = diff_json(a, b, "--check=fail")
    assert code == 1
    assert [(n["node_id"], n["before"]) for n in diff["newly_failing"]] == [
        ("y", "success"),
        ("z", None),
    ]


def test_diff_against_a_run_in_progress(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", BEFORE)
    with Quiet.SyncObserver("step_09_compare", tmp_path / "live", total_nodes=2) as obs:
        obs.node_start("fetch", 0)
        obs.node_success("fetch", 0.2, tracebus.hash_output("fetched"), None, 0.0)
        obs.node_start("parse", 1)
        obs.flush()
        done = run_tracebus("diff", a, tmp_path / "live")
        code, diff = diff_json(a, tmp_path / "live", "--check")
    assert done.returncode == 0
    assert "  B  " in done.stdout and "  incomplete  " in done.stdout
    assert "\nStatus changed (1)\n  parse: success -> running\n" in done.stdout
    assert code == 0  # running is not failing, and fetch has no hash in A
    assert diff["b"]["status"] == "incomplete"
    assert diff["newly_passing"] == [{"node_id": "fetch", "before": "failed", "after": "success"}]
    assert [n["node_id"] for n in diff["removed"]] == ["score", "publish", "tiny", "legacy"]


def test_a_seed_trace_against_a_tracebus_run(tmp_path: Path) -> None:
    seed = runs.seed_run(tmp_path / "seed")  # node_2 fails; outputs hash their node ids
    with Quiet.SyncObserver("step_02_populate", tmp_path / "new", total_nodes=4) as obs:
        for index, seconds in enumerate((1.5, 0.5, 2.0, 1.0)):
            node_id = f"node_{index}"
            obs.node_start(node_id, index)
            obs.node_success(node_id, seconds, tracebus.hash_output(node_id), {"node": node_id})
    code, diff = diff_json(seed, tmp_path / "new", "--check=hash,fail,slower")
    assert diff["a"]["format"] == "seed" and diff["b"]["format"] == "tracebus"
    assert diff["newly_passing"] == [{"node_id": "node_2", "before": "failed", "after": "success"}]
    assert diff["output_changed"] == [] and diff["added"] == diff["removed"] == []
    assert [(r["node_id"], r["ratio"]) for r in diff["slower"]] == [("node_3", 4.0)]
    assert code == 1 and diff["check"]["tripped"] == ["slower"]
    text = run_tracebus("diff", seed, tmp_path / "new").stdout
    assert "complete, seed format  " in text


def test_a_version_1_trace_compares_with_its_version_2_run(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", BEFORE)
    old = tmp_path / "trace_v1.jsonl"
    lines = []
    for raw in a.read_text().splitlines():
        event = json.loads(raw)
        if event["event_type"] == "usage":
            continue
        event["schema_version"] = 1
        lines.append(json.dumps(event))
    old.write_text("\n".join(lines) + "\n")
    code, diff = diff_json(old, a, "--check=hash,fail,slower")
    assert code == 0
    assert [n["node_id"] for n in diff["nodes_spend"]] == ["score"]  # its tokens
    assert diff["totals"]["tokens"] == {"a": 0, "b": 110, "delta": 110}


def test_bad_input_is_a_one_line_error(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", BEFORE)
    assert_one_line_error(
        run_tracebus("diff", a, tmp_path / "nowhere"), "tracebus diff: error:", "no such file"
    )
    for args, expected in (
        (("--check=hash,speed",), "argument --check: unknown gate 'speed'"),
        (("--slower", "0.5x"), "argument --slower: must be at least 1x"),
        (("--slower", "fast"), "argument --slower: not a factor such as 1.5x"),
        (("--min-seconds", "-1"), "argument --min-seconds: must be 0 or more"),
    ):
        done = run_tracebus("diff", a, a, *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.splitlines()[-1].startswith(f"tracebus diff: error: {expected}")
    done = run_tracebus("diff", a)
    assert done.returncode == 2
    assert "the following arguments are required: RUN_B" in done.stderr


def test_help_documents_runs_gates_and_exit_codes() -> None:
    done = run_tracebus("diff", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "RUN_A and RUN_B are each a trace file (.jsonl)" in text
    assert "--check=LIST" in text and "hash, fail, slower" in text
    assert "1 where --check is given and a gate tripped" in text
