"""tracebus tail against a writer at a set rate: the rate it keeps, its lag, CPU and RSS.

    python benchmarks/tail.py [--rates 250000,500000] [--seconds 6] [--nodes 50000] [--results DIR]

tracebus writes a run of ``--nodes`` nodes (a SyncObserver, progress off; durations and
costs vary from node to node, one node in 97 fails), whose trace lines are the lines
replayed. For each rate, a writer process appends them to a fresh trace (the run's start,
its node lines over and over, its end), every 10 ms as many as keep it on schedule, for
``--seconds``: the lines are encoded beforehand, because tracebus's own writer does not
reach 250,000 events/s on a 2-core machine (the run's own write rate is reported). A rate
of 0 writes as fast as it can. ``tracebus tail TRACE`` follows the trace from the start,
its standard output a pipe this process reads. Reported per rate: the rate the writer kept,
the rate tail printed at (lines over the time from the writer's start to tail's last line),
its lag when the writer ended (lines written and not yet printed, and the seconds until its
last line), its CPU time, CPU per event and peak RSS (``wait4``). Then tail on the finished
trace of the first rate (catch-up): its time, CPU, RSS and events/s.

Writes ``tail.json`` and ``tail.md`` to ``--results`` (default ``benchmarks/results``),
with the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

WRITE = """
import sys
from tracebus import SyncObserver
out, nodes = sys.argv[1], int(sys.argv[2])
with SyncObserver("step_01_tail", out, total_nodes=nodes, progress=False, console=None) as obs:
    for i in range(nodes):
        node = f"node_{i:07d}"
        obs.node_start(node, i)
        duration = 0.0005 + (i * 7919 % 100_000) / 1e5 * 1.5
        if i % 97 == 5:
            obs.node_failure(node, f"ValueError: bad row {i}", duration, 0.0)
        else:
            summary = {"node": i, "rows": i % 500, "status": "ok"}
            obs.node_success(node, duration, f"{i * 2654435761 % 2**64:016x}", summary,
                             (i % 1000) / 1e6)
"""

#: Appends the source trace's lines to a trace at a rate; prints its start and end on the
#: monotonic clock (the same clock in every process) and the lines it wrote.
REPLAY = """
import sys, time
source, trace, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
lines = open(source, "rb").read().splitlines(keepends=True)
first, nodes, last = lines[0], lines[1:-1], lines[-1]
chunk = 65536 if rate == 0 else None
with open(trace, "ab", buffering=0) as out:
    out.write(first)
    written, at = 1, 0
    started = time.monotonic()
    while (now := time.monotonic()) - started < seconds:
        due = written + chunk if chunk else 1 + int(rate * (now - started))
        lines_now = []
        while written < due:
            take = min(due - written, len(nodes) - at)
            lines_now.append(b"".join(nodes[at : at + take]))
            written, at = written + take, (at + take) % len(nodes)
        out.write(b"".join(lines_now))
        if chunk is None:
            time.sleep(0.01)
    out.write(last)
    ended = time.monotonic()
print(started, ended, written + 1)
"""


def write_source(work: Path, nodes: int) -> tuple[Path, float]:
    """The source run's trace, and the seconds tracebus took to write it."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", WRITE, str(work / "source"), str(nodes)], check=True)
    seconds = time.perf_counter() - started
    (trace,) = (work / "source" / "traces").glob("*.jsonl")
    return trace, seconds


def env() -> dict[str, str]:
    variables = dict(os.environ)
    variables["PYTHONPATH"] = str(ROOT / "src")
    return variables


def read_output(tail: subprocess.Popen[bytes]) -> list[tuple[float, int]]:
    """Read tail's output to its end: (monotonic time, lines so far) after each read."""
    assert tail.stdout is not None
    progress, lines = [], 0
    fd = tail.stdout.fileno()
    while chunk := os.read(fd, 1 << 20):
        lines += chunk.count(b"\n")
        progress.append((time.monotonic(), lines))
    return progress


def follow(source: Path, trace: Path, rate: float, seconds: float) -> dict[str, Any]:
    """tail following a trace that a writer appends to at ``rate`` lines/s."""
    trace.write_bytes(b"")
    tail = subprocess.Popen(
        [sys.executable, "-m", "tracebus", "tail", str(trace)],
        stdout=subprocess.PIPE,
        env=env(),
    )
    time.sleep(1.0)  # tail has started and is polling the empty trace
    writer = subprocess.Popen(
        [sys.executable, "-c", REPLAY, str(source), str(trace), str(rate), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    progress = read_output(tail)
    _, status, usage = os.wait4(tail.pid, 0)
    out, _ = writer.communicate()
    started, ended, written = (float(x) for x in out.split())
    printed_then = max((lines for at, lines in progress if at <= ended), default=0)
    last_at, printed = progress[-1] if progress else (ended, 0)
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "rate": rate,
        "writer_rate": round((written - 2) / (ended - started)),
        "events_written": int(written),
        "events_printed": printed,
        "tail_rate": round(printed / (last_at - started)),
        "lag_lines_at_writer_end": int(written) - printed_then,
        "lag_seconds_after_writer_end": round(max(last_at - ended, 0.0), 3),
        "cpu_seconds": round(cpu, 3),
        "cpu_us_per_event": round(cpu / max(printed, 1) * 1e6, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "exit_code": os.waitstatus_to_exitcode(status),
        "trace_mib": round(trace.stat().st_size / 2**20, 1),
    }


def catch_up(trace: Path) -> dict[str, Any]:
    """tail of a trace already written, to a pipe read here."""
    started = time.monotonic()
    tail = subprocess.Popen(
        [sys.executable, "-m", "tracebus", "tail", str(trace)],
        stdout=subprocess.PIPE,
        env=env(),
    )
    progress = read_output(tail)
    _, status, usage = os.wait4(tail.pid, 0)
    seconds = time.monotonic() - started
    printed = progress[-1][1] if progress else 0
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "events": printed,
        "trace_mib": round(trace.stat().st_size / 2**20, 1),
        "seconds": round(seconds, 3),
        "events_per_second": round(printed / seconds),
        "cpu_seconds": round(cpu, 3),
        "events_per_cpu_second": round(printed / cpu),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "exit_code": os.waitstatus_to_exitcode(status),
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| writer rate asked | writer kept | tail printed at | lag at writer's end | "
        "tail CPU | CPU per event | peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["follow"]:
        asked = f"{row['rate']:,.0f}/s" if row["rate"] else "as fast as it can"
        lag = f"{row['lag_lines_at_writer_end']:,} lines, {row['lag_seconds_after_writer_end']} s"
        lines.append(
            f"| {asked} | {row['writer_rate']:,}/s | {row['tail_rate']:,}/s | {lag} "
            f"| {row['cpu_seconds']:.2f} s | {row['cpu_us_per_event']:.2f} µs "
            f"| {row['peak_rss_mib']:.0f} MiB |"
        )
    up = report["catch_up"]
    lines += [
        "",
        f"Catch-up (the first trace, {up['events']:,} events, {up['trace_mib']} MiB, "
        f"already written): {up['seconds']:.2f} s, {up['events_per_second']:,} events/s "
        f"({up['events_per_cpu_second']:,} per CPU second), peak RSS "
        f"{up['peak_rss_mib']:.0f} MiB.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="250000,500000", help="lines/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--nodes", type=int, default=50_000)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tracebus-tail-") as scratch:
        work = Path(scratch)
        source, write_seconds = write_source(work, args.nodes)
        events = 2 * args.nodes + 2
        print(f"tracebus wrote {events} events in {write_seconds:.1f} s")
        rows = []
        for index, rate in enumerate(rates):
            row = follow(source, work / f"followed_{index}.jsonl", rate, args.seconds)
            rows.append(row)
            print(f"  rate {rate:.0f}: {row}")
            if index:
                os.unlink(work / f"followed_{index}.jsonl")
        up = catch_up(work / "followed_0.jsonl")
        print(f"  catch-up: {up}")
    load_after = os.getloadavg()
    report = {
        "source_events": events,
        "source_write_seconds": round(write_seconds, 2),
        "source_events_per_second": round(events / write_seconds),
        "seconds": args.seconds,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "follow": rows,
        "catch_up": up,
    }
    heading = (
        f"Lines of a {events:,}-event tracebus run (written by tracebus in {write_seconds:.1f} s, "
        f"{report['source_events_per_second']:,} events/s with process start), replayed for "
        f"{args.seconds:g} s a rate; {report['cpus']} CPUs, load average {load_before[0]:.1f} "
        f"before, {load_after[0]:.1f} after"
    )
    text = table(report)
    print(f"\n{heading}\n\n{text}")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "tail.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / "tail.md").write_text(f"# tracebus tail\n\n{heading}\n\n{text}\n")


if __name__ == "__main__":
    main()
