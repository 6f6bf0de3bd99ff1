"""``tracebus runs`` on an output directory of thousands of runs, beside its floor, in one run.

    python benchmarks/runs.py [--runs 2000] [--incomplete 20] [--rounds 7] [--results DIR]

Makes an output directory of ``--runs`` runs of ten workflows (steps 01 to 10): one real run of
20 nodes is written with an Observer, and its files are copied under new run ids and stamps,
a second apart, as reruns leave them (the latest run of each step in ``audit/step_NN/``, the
others archived under ``previous/``, the audit traces and logs hard links of the ``traces/`` and
``logs/`` files). ``--incomplete`` of them have no metadata (killed runs): their figures come
from their traces.

``tracebus runs --json`` is checked to list them all. Then each command runs ``--rounds``
times as a fresh process, taking turns within each round (``startup.time_in_rounds``): bare
``python -c pass``; a plain Python script that only decodes every metadata file (the floor of
reading the metadata, with nothing matched or checked); ``tracebus runs DIR``; ``tracebus runs
DIR --json``. The target: ``tracebus runs DIR`` under a second (median wall time). Prints a
table; writes ``runs.json`` to ``--results`` (default
``benchmarks/results``). Exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from startup import RESULTS, Command, time_in_rounds  # noqa: E402

import tracebus  # noqa: E402

TARGET_SECONDS = 1.0
WORKFLOWS = 10


async def _model_run(out: Path) -> tracebus.Observer:
    async with tracebus.Observer("step_01_model", out, 20, progress=False, console=None) as obs:
        for index in range(20):
            async with obs.node(f"node_{index:02d}", index) as node:
                await obs.usage("model-a", 100 + index, 20, 0.001)
                node.output({"rows": index})
    return obs


def make_runs(out: Path, count: int, incomplete: int) -> None:
    """``count`` runs under ``out``, copied from one real run (see the module's docstring)."""
    model_dir = out.parent / "model"
    model = anyio.run(_model_run, model_dir)
    trace = model.trace_file.read_bytes()
    log = model.log_file.read_bytes()
    metadata = json.loads(model.metadata_file.read_text())
    for name in ("logs", "traces"):
        (out / name).mkdir(parents=True, exist_ok=True)
    base = datetime(2026, 1, 1, 8, 0, 0)
    latest: dict[str, Path] = {}
    for index in range(count):
        step = f"{index % WORKFLOWS + 1:02d}"
        workflow_id = f"step_{step}_workflow"
        run_id = f"{index:032x}"
        started = base + timedelta(seconds=index)
        stamp = started.strftime("%Y%m%d_%H%M%S")
        trace_file = out / "traces" / f"trace_step_{step}_{stamp}.jsonl"
        log_file = out / "logs" / f"execution_{workflow_id}_{stamp}.log"
        swap = (model.run_id.encode(), run_id.encode()), (b"step_01_model", workflow_id.encode())
        body, text = trace, log
        for old, new in swap:
            body, text = body.replace(old, new), text.replace(old, new)
        trace_file.write_bytes(body)
        log_file.write_bytes(text)
        audit = out / "audit" / f"step_{step}" / "previous" / stamp
        audit.mkdir(parents=True)
        os.link(trace_file, audit / f"trace_{step}.jsonl")
        os.link(log_file, audit / f"log_{step}.log")
        if index >= incomplete:
            meta = dict(metadata, workflow_id=workflow_id, run_id=run_id, step_number=step)
            meta |= {
                "start_time": started.astimezone().isoformat(),
                "trace_file": str(audit / f"trace_{step}.jsonl"),
                "log_file": str(audit / f"log_{step}.log"),
                "execution_trace_file": str(trace_file),
                "execution_log_file": str(log_file),
            }
            (audit / f"metadata_{step}.json").write_text(json.dumps(meta, indent=2))
        latest[step] = audit
    for audit in latest.values():  # each step's latest run is in audit/step_NN itself
        for path in audit.iterdir():
            path.rename(audit.parent.parent / path.name)
        audit.rmdir()


_METADATA_FLOOR = (
    "import json, sys, pathlib\n"
    "for p in pathlib.Path(sys.argv[1]).glob('audit/step_*/**/metadata_*.json'):\n"
    "    json.loads(p.read_bytes())\n"
)


def check_listing(out: Path, count: int, incomplete: int) -> None:
    """``tracebus runs --json`` lists every run made, those without metadata from traces."""
    done = subprocess.run(
        [sys.executable, "-m", "tracebus", "runs", str(out), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    listed = json.loads(done.stdout)
    from_traces = sum(1 for run in listed if run["source"] == "trace")
    if len(listed) != count or from_traces != incomplete:
        raise SystemExit(f"listed {len(listed)} runs, {from_traces} from traces")


def commands(out: Path) -> list[Command]:
    python = sys.executable
    script = Path(python).with_name("tracebus")
    cli = (str(script),) if script.exists() else (python, "-m", "tracebus")
    return [
        Command("python -c pass", (python, "-c", "pass")),
        Command("decode every metadata file", (python, "-c", _METADATA_FLOOR, str(out))),
        Command("tracebus runs DIR", (*cli, "runs", str(out))),
        Command("tracebus runs DIR --json", (*cli, "runs", str(out), "--json")),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--incomplete", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tracebus-runs-") as scratch:
        out = Path(scratch) / "runs"
        make_runs(out, args.runs, args.incomplete)
        check_listing(out, args.runs, args.incomplete)
        todo = commands(out)
        walls, cpus = time_in_rounds(todo, args.rounds)
    rows = []
    for command in todo:
        wall = statistics.median(walls[command.name])
        rows.append(
            {
                "command": command.name,
                "wall_s": round(wall, 3),
                "wall_min_s": round(min(walls[command.name]), 3),
                "cpu_s": round(statistics.median(cpus[command.name]), 3),
            }
        )
    listing = next(row for row in rows if row["command"] == "tracebus runs DIR")
    met = listing["wall_s"] < TARGET_SECONDS
    load = os.getloadavg()
    print(
        f"{args.runs} runs ({args.incomplete} without metadata), {args.rounds} rounds, "
        f"medians; load average {load[0]:.2f} on {os.cpu_count()} cores"
    )
    print(f"{'command':<28} {'wall (s)':>9} {'min (s)':>8} {'cpu (s)':>8}")
    for row in rows:
        print(
            f"{row['command']:<28} {row['wall_s']:>9.3f} {row['wall_min_s']:>8.3f}"
            f" {row['cpu_s']:>8.3f}"
        )
    print(f"target: tracebus runs DIR under {TARGET_SECONDS:.0f} s: {'met' if met else 'missed'}")
    args.results.mkdir(parents=True, exist_ok=True)
    report = {
        "runs": args.runs,
        "incomplete": args.incomplete,
        "rounds": args.rounds,
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "load_average": load,
        "rows": rows,
        "target_seconds": TARGET_SECONDS,
        "target_met": met,
    }
    (args.results / "runs.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
