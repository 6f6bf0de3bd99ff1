"""What importing tracebus and starting its command line cost, against bare Python, in one run.

    python benchmarks/imports.py [--rounds 15] [--results DIR]

Each command runs ``--rounds`` times as a fresh process, the commands taking turns within each
round (as in ``startup.py``, whose timing this shares), so that a change in the machine's load
falls on all of them: bare ``python -c pass``, ``import tracebus``, ``tracebus --help``,
``tracebus summary --help`` and ``tracebus serve --help`` (the collector's options, NATS's
among them). For each: the minimum and the median wall time and the median CPU time, each with its
difference from bare Python's.

Targets, on the minimum wall time over bare Python's (what the command costs when the
machine lets it run; the medians are printed beside it, and on a loaded machine move more):
``import tracebus`` at most ``IMPORT_TARGET_MS``, ``tracebus summary --help`` at most
``SUMMARY_HELP_TARGET_MS``.
Prints a table; writes ``imports.json`` to ``--results`` (default ``benchmarks/results``).
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from startup import RESULTS, Command, time_in_rounds  # noqa: E402

IMPORT_TARGET_MS = 30.0
SUMMARY_HELP_TARGET_MS = 60.0
TARGETS = {"import tracebus": IMPORT_TARGET_MS, "tracebus summary --help": SUMMARY_HELP_TARGET_MS}


def commands() -> list[Command]:
    python = sys.executable
    script = Path(python).with_name("tracebus")
    # what the installed ``tracebus`` script runs, when there is none
    cli = (str(script),) if script.exists() else (python, "-c", _ENTRY_POINT, "tracebus")
    return [
        Command("python -c pass", (python, "-c", "pass")),
        Command("import tracebus", (python, "-c", "import tracebus")),
        Command("tracebus --help", (*cli, "--help")),
        Command("tracebus summary --help", (*cli, "summary", "--help")),
        Command("tracebus serve --help", (*cli, "serve", "--help")),
    ]


_ENTRY_POINT = "import sys; sys.argv.pop(0); from tracebus.cli import main; sys.exit(main())"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    todo = commands()
    seconds = time_in_rounds(todo, args.rounds)
    walls, cpus = ({name: [t * 1000 for t in ts] for name, ts in d.items()} for d in seconds)
    bare = todo[0].name
    bare_min = min(walls[bare])
    bare_wall, bare_cpu = statistics.median(walls[bare]), statistics.median(cpus[bare])
    rows = []
    for command in todo:
        fastest = min(walls[command.name])
        wall = statistics.median(walls[command.name])
        cpu = statistics.median(cpus[command.name])
        target = TARGETS.get(command.name)
        rows.append(
            {
                "command": command.name,
                "wall_min_ms": round(fastest, 1),
                "wall_min_over_bare_ms": round(fastest - bare_min, 1),
                "wall_ms": round(wall, 1),
                "cpu_ms": round(cpu, 1),
                "wall_over_bare_ms": round(wall - bare_wall, 1),
                "cpu_over_bare_ms": round(cpu - bare_cpu, 1),
                "target_over_bare_ms": target,
                "met": None if target is None else fastest - bare_min <= target,
            }
        )
    print(f"{args.rounds} rounds (ms); load average {os.getloadavg()[0]:.2f}")
    print(
        f"{'command':<26} {'wall min':>9} {'over bare':>10} {'median':>8} {'over bare':>10}"
        f" {'cpu':>7} {'over bare':>10}  target (on the minimum)"
    )
    for row in rows:
        target = ""
        if row["target_over_bare_ms"] is not None:
            verdict = "met" if row["met"] else "missed"
            target = f"<= {row['target_over_bare_ms']:.0f} over bare: {verdict}"
        print(
            f"{row['command']:<26} {row['wall_min_ms']:>9.1f} {row['wall_min_over_bare_ms']:>10.1f}"
            f" {row['wall_ms']:>8.1f} {row['wall_over_bare_ms']:>10.1f} {row['cpu_ms']:>7.1f}"
            f" {row['cpu_over_bare_ms']:>10.1f}  {target}"
        )
    met = all(row["met"] is not False for row in rows)
    args.results.mkdir(parents=True, exist_ok=True)
    report = {
        "rounds": args.rounds,
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": rows,
        "targets_met": met,
    }
    (args.results / "imports.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
