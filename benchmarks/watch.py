"""What a watch page costs a run's writer, and how much the page keeps up with.

    python benchmarks/watch.py                    # 20,000 nodes, 5 rounds; 1, 4 and 16 runs at once
    python benchmarks/watch.py --quick            # 5,000 nodes, 3 rounds; 1 and 4 runs

Part one: a writer process records NODES nodes as fast as it can (an ``Observer``, progress
and console off), with no watch, and with ``tracebus watch`` serving the output directory
and a page open on the run (its two event streams, the runs list's and the run's, read as
a browser reads them); the two alternate, round after round, in one run. Part two: RUNS
writers at once, each with its own page open, and the runs list: the events per second
written in all, the updates each page got, and how long after each run's
``workflow_complete`` was written its page heard of it (the lag). The watch's CPU time is
read from /proc. Results go to benchmarks/results/watch.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "watch.json"


def writer(out: str, workflow_id: str, nodes: int) -> None:
    """The writer process: says its trace, waits for ``go``, records, says how fast."""
    import anyio

    import tracebus

    async def main() -> None:
        obs = tracebus.Observer(workflow_id, out, total_nodes=nodes, progress=False, console=None)
        async with obs:
            print(obs.trace_file, flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            started = time.perf_counter()
            for index in range(nodes):
                name = f"node_{index:06d}"
                await obs.node_start(name, index)
                await obs.node_success(name, duration_seconds=0.0, cost_usd=0.0001)
        elapsed = time.perf_counter() - started
        print(json.dumps({"seconds": elapsed, "events_per_s": (2 * nodes + 2) / elapsed}))

    anyio.run(main)


class Page:
    """A page's event stream, read in a thread: when each update came, and what it said."""

    def __init__(self, port: int, path: str) -> None:
        self.updates: list[tuple[float, dict[str, Any]]] = []
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.connection.request("GET", path)
        self.response = self.connection.getresponse()
        assert self.response.status == 200, path
        self.first = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self.first.wait(30)

    def _read(self) -> None:
        try:
            for raw in self.response:
                if raw.startswith(b"data: "):
                    self.updates.append((time.time(), json.loads(raw[6:])))
                    self.first.set()
        except (OSError, ValueError, AttributeError):
            pass  # closed by close(): http.client drops its file under the reading thread

    def completed_at(self) -> float | None:
        for arrived, update in self.updates:
            if update.get("run", {}).get("status") == "complete":
                return arrived
        return None

    def close(self) -> None:
        self.connection.close()


_started: list[subprocess.Popen[str]] = []


def _python(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen([sys.executable, *args], text=True, env=env, **kwargs)
    _started.append(process)
    return process


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _completion_epoch(trace: Path) -> float:
    last = trace.read_bytes().rstrip().rpartition(b"\n")[2]
    epoch: float = json.loads(last)["epoch_seconds"]
    return epoch


def one_round(out: Path, runs: int, nodes: int, watched: bool) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    writers = [
        _python(
            __file__,
            "--writer",
            str(out),
            f"step_{i + 1:02d}_bench",
            str(nodes),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )  # fmt: skip
        for i in range(runs)
    ]
    traces = [Path(w.stdout.readline().strip()) for w in writers if w.stdout is not None]
    watch = None
    pages: list[Page] = []
    if watched:
        watch = _python("-m", "tracebus", "watch", str(out), "--port", "0",
                        stdout=subprocess.PIPE)  # fmt: skip
        assert watch.stdout is not None
        port = int(watch.stdout.readline().strip().rstrip("/").rpartition(":")[2])
        pages.append(Page(port, "/events/runs"))
        real = os.path.realpath(out)
        for trace in traces:
            pages.append(Page(port, f"/events/run/0/{os.path.relpath(trace, real)}"))
        cpu_before = _cpu_seconds(watch.pid)
    started = time.perf_counter()
    for w in writers:
        assert w.stdin is not None
        w.stdin.write("go\n")
        w.stdin.flush()
    said = [json.loads(w.stdout.readline()) for w in writers if w.stdout is not None]
    for w in writers:
        w.wait()
    wall = time.perf_counter() - started
    result: dict[str, Any] = {
        "runs": runs,
        "watched": watched,
        "writer_events_per_s": [round(s["events_per_s"]) for s in said],
        "all_events_per_s": round(runs * (2 * nodes + 2) / wall),
    }
    if watch is not None:
        deadline = time.time() + 60
        run_pages = pages[1:]
        while time.time() < deadline and any(p.completed_at() is None for p in run_pages):
            time.sleep(0.05)
        lags = []
        for page, trace in zip(run_pages, traces, strict=True):
            arrived = page.completed_at()
            lags.append(None if arrived is None else arrived - _completion_epoch(trace))
        result["page_lag_s"] = [None if lag is None else round(lag, 3) for lag in lags]
        result["updates_per_page"] = [len(p.updates) for p in run_pages]
        result["attempts_sent"] = [
            sum(u["timeline"]["attempts"]["count"] for _, u in p.updates if "timeline" in u)
            for p in run_pages
        ]
        result["watch_cpu_s"] = round(_cpu_seconds(watch.pid) - cpu_before, 3)
        for page in pages:
            page.close()
        watch.terminate()
        watch.wait()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", default="1,4,16", help="runs at once in part two")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.rounds, args.runs = 5_000, 3, "1,4"
    work = Path(tempfile.mkdtemp(prefix="tracebus-watch-bench-"))
    try:
        unwatched, watched = [], []
        for _ in range(args.rounds):  # side by side: the two alternate
            unwatched.append(one_round(work / "runs", 1, args.nodes, watched=False))
            watched.append(one_round(work / "runs", 1, args.nodes, watched=True))
        rates_alone = [r["writer_events_per_s"][0] for r in unwatched]
        rates_watched = [r["writer_events_per_s"][0] for r in watched]
        part_one = {
            "nodes": args.nodes,
            "rounds": args.rounds,
            "events_per_s_alone": rates_alone,
            "events_per_s_watched": rates_watched,
            "median_alone": statistics.median(rates_alone),
            "median_watched": statistics.median(rates_watched),
            "watched_rounds": watched,
        }
        print(f"one writer, {args.nodes} nodes ({2 * args.nodes + 2} events), {args.rounds} rounds")
        alone, watched_median = part_one["median_alone"], part_one["median_watched"]
        print(f"  events/s without a watch:   median {alone:>9,.0f}  {rates_alone}")
        print(f"  events/s with a page open:  median {watched_median:>9,.0f}  {rates_watched}")
        print(f"  page lag at completion (s): {[r['page_lag_s'][0] for r in watched]}")
        print(f"  updates per page:           {[r['updates_per_page'][0] for r in watched]}")
        part_two = []
        for runs in (int(n) for n in args.runs.split(",")):
            result = one_round(work / "runs", runs, args.nodes, watched=True)
            part_two.append(result)
            lags = [lag for lag in result["page_lag_s"] if lag is not None]
            print(
                f"{runs} runs at once: {result['all_events_per_s']:,} events/s written in all; "
                f"pages complete {len(lags)}/{runs}, lag max {max(lags):.3f}s; "
                f"updates per page max {max(result['updates_per_page'])}; "
                f"watch CPU {result['watch_cpu_s']}s"
            )
        report = {
            "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
            "python": sys.version.split()[0],
            "one_writer": part_one,
            "runs_at_once": part_two,
        }
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        for process in _started:  # a round that failed leaves no process behind
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--writer"]:
        writer(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
