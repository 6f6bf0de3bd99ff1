"""Run every peer on the same workload, side by side, and report what observability costs.

    python benchmarks/run.py --quick     # under a minute
    python benchmarks/run.py             # the full run, under ten minutes

Each measurement runs in a fresh subprocess (this script with ``--child``), so peak RSS is
that peer's own and no peer inherits another's threads, imports or page cache state. There,
the peer first runs a small workflow (``WARM_UP_NODES``) on the same event loop, so one-off
costs (lazy imports, thread pools) are not spread over the measured events; that run's time
is reported too. Peers run in turn, round after round, and each figure is the median over the
rounds; a peer's overhead is the median of its rounds' differences from the same rounds'
baseline. Results go to ``benchmarks/results/latest.json`` and ``latest.md`` (``--results``
to write elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import PEERS, Peer  # noqa: E402
from workload import (  # noqa: E402
    LagProbe,
    events_of,
    lag_summary,
    peak_rss_mib,
    run_async_workflow,
    run_thread_workflow,
)

QUICK = {"nodes": 5_000, "repeat": 3, "sustained": 500_000}
FULL = {"nodes": 20_000, "repeat": 5, "sustained": 5_000_000}
CONCURRENCY = 50
THREADS = 8
PRODUCERS = 100
CHILD_TIMEOUT = 300.0
WARM_UP_NODES = 200
#: Sizes of the speed checks timed at the start and end of a run (see SPEED_CHECKS).
SPEED_CHECK_ADDITIONS = 2_000_000
SPEED_CHECK_APPENDS = 5_000
SPEED_CHECK_ROUND_TRIPS = 5_000


# -- one measurement, in its own process -------------------------------------------------


def measure_peer(
    peer: Peer, nodes: int, concurrency: int, threads: int, out: Path
) -> dict[str, Any]:
    factory = peer.load()
    recorder = factory(out / "run", nodes)

    async def workflow(recorder: Any, nodes: int) -> float:
        if peer.kind == "async":
            return await run_async_workflow(recorder, nodes, concurrency)
        return await asyncio.to_thread(run_thread_workflow, recorder, nodes, threads)

    async def timed() -> tuple[float, float, float, float, LagProbe]:
        # One-off costs (lazy imports, thread pools, first file opens) are paid by a small
        # run on the same event loop first, so the measured run shows the cost per event.
        warm_started = time.perf_counter()
        await workflow(factory(out / "warm-up", WARM_UP_NODES), WARM_UP_NODES)
        warm_up = time.perf_counter() - warm_started
        lag = LagProbe()
        lag.start()
        started = time.perf_counter()
        nodes_done = await workflow(recorder, nodes)
        finished = time.perf_counter()
        await lag.stop()
        return warm_up, started, nodes_done, finished, lag

    warm_up, started, nodes_done, finished, lag = asyncio.run(timed())
    expected = peer.trace_lines(nodes)
    lines = [_count_lines(path) for path in recorder.trace_files()]
    return {
        "peer": peer.name,
        "seconds": finished - started,
        "close_seconds": finished - nodes_done,
        "warm_up_seconds": warm_up,
        # while the nodes run (the load the targets speak of), and over the whole run
        "lag_samples": [round(late, 7) for late in lag.samples(until=nodes_done)],
        "lag_whole_run": lag.summary(),
        "peak_rss_mib": peak_rss_mib(),
        "trace_lines": lines,
        "trace_lines_expected": expected,
        "complete": all(count == expected for count in lines),
    }


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def child(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if args.child == "sustained":
        from sustained import run_sustained

        result = asyncio.run(run_sustained(out, args.events, args.producers))
    else:
        result = measure_peer(PEERS[args.child], args.nodes, args.concurrency, args.threads, out)
    Path(args.result).write_text(json.dumps(result))


def spawn(name: str, scratch: Path, extra: list[str]) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch))
    result = out.with_suffix(".json")
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name]
    command += ["--out", str(out), "--result", str(result), *extra]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        data: dict[str, Any] = json.loads(result.read_text())
        return data
    finally:
        shutil.rmtree(out, ignore_errors=True)
        result.unlink(missing_ok=True)


# -- the whole comparison -------------------------------------------------------------------


def compare(
    names: list[str], nodes: int, repeat: int, scratch: Path, log: Any
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    extra = ["--nodes", str(nodes), "--concurrency", str(CONCURRENCY), "--threads", str(THREADS)]
    for round_number in range(repeat):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            result = spawn(name, scratch, extra)
            runs[name].append(result)
            print(
                f"  round {round_number + 1}/{repeat} {name:<18} {result['seconds']:.3f}s",
                file=log,
                flush=True,
            )
    return runs


def summarise(runs: dict[str, list[dict[str, Any]]], nodes: int) -> list[dict[str, Any]]:
    events = events_of(nodes)
    seconds = {
        name: statistics.median(r["seconds"] for r in results) for name, results in runs.items()
    }
    rows = []
    for name, results in runs.items():
        peer = PEERS[name]
        overhead = None
        if name != peer.baseline and peer.baseline in runs:
            # each round against the same round's baseline, run moments apart: a machine whose
            # load drifts (other jobs) shifts both, not the difference
            base = runs[peer.baseline]
            overhead = statistics.median(
                (r["seconds"] - b["seconds"]) / events * 1e6
                for r, b in zip(results, base, strict=True)
            )
        rows.append(
            {
                "peer": name,
                "label": peer.label,
                "kind": peer.kind,
                "events": events,
                "seconds": seconds[name],
                "seconds_all": [r["seconds"] for r in results],
                "overhead_us_per_event": overhead,
                "events_per_s": events / seconds[name],
                **_pooled_lag(results),
                "lag_max_whole_run_ms": max(r["lag_whole_run"]["max_ms"] for r in results),
                "close_seconds": statistics.median(r["close_seconds"] for r in results),
                "warm_up_seconds": statistics.median(r["warm_up_seconds"] for r in results),
                "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in results),
                "complete": all(r["complete"] for r in results),
                "trace_lines": results[-1]["trace_lines"],
            }
        )
    return rows


def _pooled_lag(results: list[dict[str, Any]]) -> dict[str, float]:
    # every round's ticks together: one round has too few ticks for a meaningful p99
    pooled = lag_summary([late for r in results for late in r["lag_samples"]])
    return {
        "lag_p50_ms": pooled["p50_ms"],
        "lag_p99_ms": pooled["p99_ms"],
        "lag_max_ms": pooled["max_ms"],
        "lag_ticks": pooled["ticks"],
    }


def _ratio_text(ratio: float, *, up: bool = False) -> str:
    """``12.3x``, rounded away from the target (down for "at least", ``up`` for "at most"): a
    ratio just short of its target never reads as met."""
    if not math.isfinite(ratio):
        return "no overhead to compare"
    rounded = math.ceil(ratio * 10) if up else math.floor(ratio * 10)
    return f"{rounded / 10:.1f}x"


def targets(rows: list[dict[str, Any]], sustained: dict[str, Any] | None) -> list[dict[str, Any]]:
    by = {row["peer"]: row for row in rows}
    checks: list[dict[str, Any]] = []

    def overhead(name: str) -> float | None:
        row = by.get(name)
        return None if row is None else row["overhead_us_per_event"]

    ours = overhead("tracebus")
    for name, wanted in (("logging", 10.0), ("seed", 15.0)):
        theirs = overhead(name)
        if ours is not None and theirs is not None:
            ratio = theirs / ours if ours > 0 else float("inf")
            checks.append(
                {
                    "target": f"overhead {wanted:g}x lower than {name}",
                    "measured": _ratio_text(ratio),
                    "met": ratio >= wanted,
                }
            )
    naive = overhead("naive")
    if ours is not None and naive is not None:
        checks.append(
            {
                "target": "overhead at most the naive batching writer's",
                "measured": f"{ours:.2f} against {naive:.2f} µs",
                "met": ours <= naive,
            }
        )
    threads, threads_seed = overhead("threads-tracebus"), overhead("threads-seed")
    if threads is not None and ours is not None:
        ratio = threads / ours if ours > 0 else float("inf")
        checks.append(
            {
                "target": "threads overhead at most 2x the async path's",
                "measured": _ratio_text(ratio, up=True),
                "met": ratio <= 2.0,
            }
        )
    if threads is not None and threads_seed is not None:
        ratio = threads_seed / threads if threads > 0 else float("inf")
        checks.append(
            {
                "target": "threads overhead 15x lower than seed (threads)",
                "measured": _ratio_text(ratio),
                "met": ratio >= 15.0,
            }
        )
    if ours is not None:
        checks.append(
            {
                "target": "overhead about 5 µs/event or less",
                "measured": f"{ours:.2f} µs",
                "met": ours <= 5.0,
            }
        )
    if "tracebus" in by:
        p99 = by["tracebus"]["lag_p99_ms"]
        checks.append(
            {
                "target": "loop lag p99 under 2 ms (workflow)",
                "measured": f"{p99:.2f} ms",
                "met": p99 < 2.0,
            }
        )
    if sustained is not None:
        rate = sustained["events_per_s"]
        checks.append(
            {
                "target": "sustained ≥ 250,000 events/s",
                "measured": f"{rate:,.0f}/s",
                "met": rate >= 250_000,
            }
        )
        p99 = sustained["lag"]["p99_ms"]
        checks.append(
            {
                "target": "loop lag p99 under 2 ms (sustained)",
                "measured": f"{p99:.2f} ms",
                "met": p99 < 2.0,
            }
        )
        growth = sustained["rss_growth_mib"]
        checks.append(
            {
                "target": "RSS growth under 64 MiB (sustained)",
                "measured": f"{growth:.1f} MiB",
                "met": growth < 64,
            }
        )
    return checks


def _python_loop_ms() -> float:
    started = time.perf_counter()
    total = 0
    for number in range(SPEED_CHECK_ADDITIONS):
        total += number
    return (time.perf_counter() - started) * 1e3


def _file_appends_ms() -> float:
    with tempfile.TemporaryDirectory(prefix="tracebus-speed-") as scratch:
        path = Path(scratch) / "appends.log"
        line = "x" * 99 + "\n"
        started = time.perf_counter()
        for _ in range(SPEED_CHECK_APPENDS):
            with open(path, "a") as file:
                file.write(line)
        return (time.perf_counter() - started) * 1e3


def _thread_round_trips_ms() -> float:
    requests: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    replies: queue.SimpleQueue[int] = queue.SimpleQueue()

    def echo() -> None:
        while (message := requests.get()) is not None:
            replies.put(message)

    echoing = threading.Thread(target=echo)
    echoing.start()
    try:
        started = time.perf_counter()
        for number in range(SPEED_CHECK_ROUND_TRIPS):
            requests.put(number)
            replies.get()
        return (time.perf_counter() - started) * 1e3
    finally:
        requests.put(None)
        echoing.join()


#: The speed checks, one per kind of work the peers do: (key in the report, label, check).
SPEED_CHECKS: tuple[tuple[str, str, Callable[[], float]], ...] = (
    ("python_loop_ms", f"{SPEED_CHECK_ADDITIONS:,} additions in a Python loop", _python_loop_ms),
    (
        "file_appends_ms",
        f"{SPEED_CHECK_APPENDS:,} file appends (open, append, close)",
        _file_appends_ms,
    ),
    (
        "thread_round_trips_ms",
        f"{SPEED_CHECK_ROUND_TRIPS:,} thread round trips",
        _thread_round_trips_ms,
    ),
)


def speed_checks() -> dict[str, float]:
    """Milliseconds for three fixed tasks: interpreting Python, file syscalls, waking another
    thread. On one machine each is the same from run to run unless the machine itself is slowed
    (a busy host), which every figure then shows too; between machines they tell which kind of
    work is dearer where."""
    return {key: check() for key, _, check in SPEED_CHECKS}


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_avg_start": os.getloadavg(),
        "speed_checks_start": speed_checks(),
    }


def _speed_checks_text(info: dict[str, Any]) -> str:
    start, end = info["speed_checks_start"], info["speed_checks_end"]
    return ", ".join(
        f"{label} {start[key]:.0f} / {end[key]:.0f} ms" for key, label, _ in SPEED_CHECKS
    )


def markdown(report: dict[str, Any]) -> str:
    info, config = report["machine"], report["config"]
    out = [
        f"Measured {report['date']} on {info['cores']} cores ({info['cpu'] or 'unknown CPU'}), "
        f"{info['implementation']} {info['python']}, {info['platform']}; load average "
        f"{info['load_avg_start'][0]:.2f} at start, {info['load_avg_end'][0]:.2f} at end; "
        f"speed checks at start / end: {_speed_checks_text(info)}.",
        f"Workload: {config['nodes']:,} nodes ({report['rows'][0]['events']:,} events), "
        f"{config['concurrency']} async workers or {config['threads']} threads; "
        f"median of {config['repeat']} rounds, each peer in a fresh process. "
        f"Command: `{config['command']}`.",
        "",
        "| peer | time (s) | of which closing (s) | overhead (µs/event) | events/s "
        "| loop lag p50 / p99 / max while nodes run (ms) | max lag incl. closing (ms) "
        f"| peak RSS (MiB) | files complete | warm-up, {WARM_UP_NODES} nodes (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for row in report["rows"]:
        overhead = row["overhead_us_per_event"]
        out.append(
            f"| {row['label']} | {row['seconds']:.3f} | {row['close_seconds']:.3f} | "
            f"{'—' if overhead is None else f'{overhead:.2f}'} | {row['events_per_s']:,.0f} | "
            f"{row['lag_p50_ms']:.2f} / {row['lag_p99_ms']:.2f} / {row['lag_max_ms']:.1f} | "
            f"{row['lag_max_whole_run_ms']:.1f} | "
            f"{row['peak_rss_mib']:.0f} | {'yes' if row['complete'] else 'NO'} | "
            f"{row['warm_up_seconds'] * 1e3:.1f} |"
        )
    sustained = report.get("sustained")
    if sustained is not None:
        marks = " · ".join(
            f"{int(k):,} events: {v['rss_mib']:.0f} MiB" for k, v in sustained["rss_at"].items()
        )
        lag = sustained["lag"]
        out += [
            "",
            f"Sustained: {sustained['events']:,} events from {sustained['producers']} producers, "
            f"progress off: **{sustained['events_per_s']:,.0f} events/s** written "
            f"({sustained['seconds_to_written']:.1f} s; close with fsync "
            f"{sustained['seconds_to_closed'] - sustained['seconds_to_written']:.1f} s); the first "
            f"{min(int(k) for k in sustained['rss_at']):,} events at "
            f"{sustained['events_per_s_first']:,.0f} events/s. RSS {marks} "
            f"(growth {sustained['rss_growth_mib']:.1f} MiB); "
            f"loop lag while producing p50 / p99 / max {lag['p50_ms']:.2f} / "
            f"{lag['p99_ms']:.2f} / {lag['max_ms']:.1f} ms "
            f"(max {sustained['lag_whole_run']['max_ms']:.1f} ms with draining and closing); "
            "all events written: "
            f"{'yes' if sustained['events_written'] == sustained['events'] else 'NO'}.",
        ]
    out += ["", "| target | measured | met |", "| --- | ---: | --- |"]
    for check in report["targets"]:
        out.append(
            f"| {check['target']} | {check['measured']} | {'yes' if check['met'] else 'no'} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under a minute")
    parser.add_argument("--nodes", type=int, help="nodes per workflow run")
    parser.add_argument("--repeat", type=int, help="rounds over all peers")
    parser.add_argument("--sustained", type=int, help="events in the sustained run (0: skip)")
    parser.add_argument("--peers", help="comma-separated peer names (default: all)")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="where to write")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=THREADS, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--producers", type=int, default=PRODUCERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0

    sizes = dict(QUICK if args.quick else FULL)
    for key in ("nodes", "repeat", "sustained"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    names = args.peers.split(",") if args.peers else list(PEERS)
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        parser.error(f"unknown peers: {', '.join(unknown)}; known: {', '.join(PEERS)}")
    for name in list(names):
        baseline = PEERS[name].baseline
        if baseline not in names:
            names.insert(0, baseline)

    report: dict[str, Any] = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            "nodes": sizes["nodes"],
            "repeat": sizes["repeat"],
            "concurrency": CONCURRENCY,
            "threads": THREADS,
            "sustained_events": sizes["sustained"],
            "producers": PRODUCERS,
            "command": " ".join(
                ["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]
            ),
        },
    }
    args.results.mkdir(parents=True, exist_ok=True)
    # the peers' files go to results/tmp/ (ignored by git), on the same disk as the results
    scratch_root = args.results / "tmp"
    scratch_root.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-", dir=scratch_root))
    started = time.perf_counter()
    try:
        print(f"workflow: {sizes['nodes']:,} nodes, {sizes['repeat']} rounds", file=sys.stderr)
        runs = compare(names, sizes["nodes"], sizes["repeat"], scratch, sys.stderr)
        report["rows"] = summarise(runs, sizes["nodes"])
        sustained = None
        if sizes["sustained"]:
            print(f"sustained: {sizes['sustained']:,} events", file=sys.stderr, flush=True)
            extra = ["--events", str(sizes["sustained"]), "--producers", str(PRODUCERS)]
            sustained = spawn("sustained", scratch, extra)
            rss = [v["rss_mib"] for v in sustained["rss_at"].values()]
            sustained["rss_growth_mib"] = max(rss) - min(rss)
        report["sustained"] = sustained
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        with contextlib.suppress(OSError):
            scratch_root.rmdir()
    report["machine"]["load_avg_end"] = os.getloadavg()
    report["machine"]["speed_checks_end"] = speed_checks()
    report["wall_seconds"] = time.perf_counter() - started
    report["targets"] = targets(report["rows"], sustained)
    table = markdown(report)
    (args.results / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / "latest.md").write_text(table)
    print(table)
    print(f"({report['wall_seconds']:.0f} s; written to {args.results})", file=sys.stderr)
    incomplete = [row["peer"] for row in report["rows"] if not row["complete"]]
    if sustained is not None and sustained["events_written"] != sustained["events"]:
        incomplete.append("sustained")
    if incomplete:
        print(f"incomplete output files: {', '.join(incomplete)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
