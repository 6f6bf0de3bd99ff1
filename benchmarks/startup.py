"""What tracebus adds to a process's start, and to a small run's whole process, side by side.

    python benchmarks/startup.py [--rounds 21] [--nodes 200] [--latency 0] [--results DIR]

Each command runs ``--rounds`` times as a fresh process, the commands taking turns within each
round so that a change in the machine's load falls on all of them. For each: the median wall
time and the median CPU time (user + system, which another process's load disturbs less),
and their differences from bare ``python -c pass``:

- ``import tracebus``, ``import tracebus.compat`` (the target: at most 40 ms over bare
  Python), ``tracebus --help``;
- the thread-pool runner of ``tests/compat`` running a ``--nodes`` fan-out with the old
  observer's stand-in and with ``tracebus.compat`` (progress bar on, as the old observer's
  default), each in a fresh output directory: the whole process, start to exit. The fake
  model answers at once, or after ``--latency`` seconds.

Modules are imported from bytecode, as from an installed package (pip compiles it at
install): the children write theirs under a scratch ``PYTHONPYCACHEPREFIX`` (whatever
``PYTHONDONTWRITEBYTECODE`` says), and a first round, not counted, compiles everything.

Prints a table; writes ``startup.json`` to ``--results`` (default ``benchmarks/results``).
Exits 1 when ``import tracebus.compat`` misses its target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
IMPORT_TARGET_MS = 40.0


@dataclass(frozen=True)
class Command:
    name: str
    argv: tuple[str, ...]
    run_dir: bool = False  # runs in a fresh directory of its own (the runner writes files)


def commands(nodes: int, latency: float) -> list[Command]:
    python = sys.executable
    script = Path(python).with_name("tracebus")
    cli = (str(script),) if script.exists() else (python, "-m", "tracebus")
    runner = (python, "-m", "tests.compat.runner", "--fan-out", str(nodes), "--out", "runs")
    runner += ("--latency", str(latency))
    return [
        Command("python -c pass", (python, "-c", "pass")),
        Command("import tracebus", (python, "-c", "import tracebus")),
        Command("import tracebus.compat", (python, "-c", "import tracebus.compat")),
        Command("tracebus --help", (*cli, "--help")),
        Command(f"runner, {nodes} nodes, old observer", (*runner, "--observer", "seed"), True),
        Command(
            f"runner, {nodes} nodes, tracebus.compat", (*runner, "--observer", "tracebus"), True
        ),
    ]


def measure(command: Command, scratch: Path) -> tuple[float, float]:
    """One run: (wall seconds, CPU seconds of the child)."""
    cwd = Path(tempfile.mkdtemp(dir=scratch)) if command.run_dir else scratch
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # the repository's root for ``tests.compat``, then any PYTHONPATH given (another tracebus)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env |= {"PYTHONPATH": path, "PYTHONPYCACHEPREFIX": str(scratch / "pycache")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        command.argv, cwd=cwd, env=env, capture_output=True, timeout=120, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{command.name} exited {done.returncode}:\n{done.stderr.decode()}")
    if command.run_dir:
        shutil.rmtree(cwd)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def time_in_rounds(
    todo: list[Command], rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each command's wall and CPU seconds over ``rounds`` rounds, each round starting one
    command later, after one uncounted run of each (it compiles every module)."""
    walls: dict[str, list[float]] = {c.name: [] for c in todo}
    cpus: dict[str, list[float]] = {c.name: [] for c in todo}
    with tempfile.TemporaryDirectory(prefix="tracebus-bench-") as scratch:
        for command in todo:
            measure(command, Path(scratch))
        for round_number in range(rounds):
            shift = round_number % len(todo)
            for command in todo[shift:] + todo[:shift]:
                wall, cpu = measure(command, Path(scratch))
                walls[command.name].append(wall)
                cpus[command.name].append(cpu)
    return walls, cpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.0, help="the fake model's (s)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    todo = commands(args.nodes, args.latency)
    walls, cpus = time_in_rounds(todo, args.rounds)
    bare = todo[0].name
    rows = []
    for command in todo:
        wall = statistics.median(walls[command.name]) * 1000
        cpu = statistics.median(cpus[command.name]) * 1000
        rows.append(
            {
                "command": command.name,
                "wall_ms": round(wall, 1),
                "cpu_ms": round(cpu, 1),
                "wall_over_bare_ms": round(wall - statistics.median(walls[bare]) * 1000, 1),
                "cpu_over_bare_ms": round(cpu - statistics.median(cpus[bare]) * 1000, 1),
            }
        )
    print(f"{args.rounds} rounds, medians (ms); load average {os.getloadavg()[0]:.2f}")
    print(f"{'command':<42} {'wall':>8} {'over bare':>10} {'cpu':>8} {'over bare':>10}")
    for row in rows:
        print(
            f"{row['command']:<42} {row['wall_ms']:>8.1f} {row['wall_over_bare_ms']:>10.1f}"
            f" {row['cpu_ms']:>8.1f} {row['cpu_over_bare_ms']:>10.1f}"
        )
    compat = next(r for r in rows if r["command"] == "import tracebus.compat")
    met = compat["wall_over_bare_ms"] <= IMPORT_TARGET_MS
    print(
        f"import tracebus.compat: {compat['wall_over_bare_ms']:.1f} ms over bare Python "
        f"(target {IMPORT_TARGET_MS:.0f} ms): {'met' if met else 'missed'}"
    )
    args.results.mkdir(parents=True, exist_ok=True)
    report = {
        "rounds": args.rounds,
        "nodes": args.nodes,
        "latency": args.latency,
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": rows,
        "import_target_ms": IMPORT_TARGET_MS,
        "import_target_met": met,
    }
    (args.results / "startup.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
