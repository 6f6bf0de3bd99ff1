"""The readers against the file they read, side by side: tracebus's commands today, the
readers of an earlier commit, DuckDB and a bare msgspec loop, on one run.

    python benchmarks/readers.py [--nodes 500000] [--old COMMIT] [--results DIR] [--only A,B]

A run of ``--nodes`` nodes (a start and an end each, one failure in 97) is written by
tracebus (a SyncObserver, progress off) into a scratch directory. Then each reader runs once
as a fresh process, on the same trace, and reports its wall time and peak RSS (``wait4``):

- ``tracebus summary --json``, ``export --format chrome``, ``export --format otlp`` and
  ``timeline`` of this checkout (its ``src``), the exports and the page written to files,
  whose sizes are reported;
- the same four with the readers of ``--old`` (default: the last commit before the one-pass
  readers), taken from git into a scratch directory and imported from there;
- DuckDB (optional, the ``bench`` extra): ``read_json`` of the trace and a ``group by
  event_type`` counting events and summing cost;
- a 15-line msgspec loop over the lines that counts the types and sums the cost.

Each timeline page is then opened in headless Chromium (through Selenium and Debian's
chromedriver, the ``bench`` extra; left out without them): the time to its first frame, as
the page records it (from navigation start, its data read and decoded), and the time of a
frame zoomed in to a tenth of the run and out again.

Prints a table; writes ``readers.json`` and ``readers.md`` to ``--results`` (default
``benchmarks/results``), with the machine's load average before and after. ``--only`` times
only the readers whose names hold one of its comma-separated words (``summary,DuckDB``),
and writes ``readers-only.json`` and ``readers-only.md`` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: main just before the readers read in one pass
OLD_COMMIT = "88182fc"

WRITE = """
import sys
from tracebus import SyncObserver
out, nodes = sys.argv[1], int(sys.argv[2])
with SyncObserver("step_01_readers", out, total_nodes=nodes, progress=False, console=None) as obs:
    for i in range(nodes):
        node = f"node_{i:07d}"
        obs.node_start(node, i)
        if i % 97 == 5:
            obs.node_failure(node, f"ValueError: bad row {i}", 0.002, 0.0)
        else:
            summary = {"node": i, "rows": i % 500, "status": "ok"}
            obs.node_success(node, 0.001, "ab12cd34ef56ab78", summary, 0.0001)
"""

MSGSPEC_LOOP = """
import sys
from collections import Counter
import msgspec

class Line(msgspec.Struct):
    event_type: str
    cost_usd: float = 0.0

decode = msgspec.json.Decoder(Line).decode
types, cost = Counter(), 0.0
with open(sys.argv[1], "rb") as trace:
    for raw in trace:
        line = decode(raw)
        types[line.event_type] += 1
        cost += line.cost_usd
print(dict(types), cost)
"""

DUCKDB = """
import sys
import duckdb
rows = duckdb.sql(
    "select event_type, count(*), sum(cost_usd) "
    f"from read_json('{sys.argv[1]}', format='newline_delimited') group by event_type"
).fetchall()
print(rows)
"""


@dataclass(frozen=True)
class Reader:
    name: str
    argv: tuple[str, ...]
    output: str | None = None  # the file it writes, whose size is reported
    pythonpath: str | None = None
    page: bool = False  # the output is a timeline page, opened in Chromium


PAGE_FRAMES = """
const page = window.tracebusPage, drawn = page.drawn, span = drawn.span;
const zoomed = page.zoom(span * 0.45, span * 0.55), out = page.zoom(0, span);
return [drawn.renderMs, zoomed.frameMs, out.frameMs];
"""


def open_page(path: str) -> dict[str, Any]:
    """The page's first frame in headless Chromium, and a frame zoomed in and out; {} when
    Selenium or chromedriver is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        return {}
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        return {}
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(Path(path).resolve().as_uri())
        drawn = WebDriverWait(driver, 120, poll_frequency=0.05).until(
            lambda d: d.find_element(By.ID, "drawn").get_attribute("data-render-ms")
        )
        result: dict[str, Any] = {"first_frame_ms": float(drawn)}
        if driver.execute_script("return !!window.tracebusPage"):  # the old page has none
            _, zoom_in, zoom_out = driver.execute_script(PAGE_FRAMES)
            result["zoom_in_frame_ms"] = float(zoom_in)
            result["zoom_out_frame_ms"] = float(zoom_out)
        return result
    finally:
        driver.quit()


def readers(trace: Path, work: Path, old_src: Path | None) -> list[Reader]:
    python = sys.executable
    cli = (python, "-m", "tracebus")
    chosen: list[Reader] = []
    sides = [("", str(ROOT / "src"))]
    if old_src is not None:
        sides.insert(0, ("old ", str(old_src)))
    for label, path in sides:
        tag = "old" if label else "new"
        chrome, otlp, page = (str(work / f"{tag}.{ext}") for ext in ("json", "otlp", "html"))
        chosen += [
            Reader(f"{label}tracebus summary --json", (*cli, "summary", "--json", str(trace)),
                   pythonpath=path),
            Reader(f"{label}tracebus export --format chrome",
                   (*cli, "export", str(trace), "--format", "chrome", "-o", chrome), chrome, path),
            Reader(f"{label}tracebus export --format otlp",
                   (*cli, "export", str(trace), "--format", "otlp", "-o", otlp), otlp, path),
            Reader(f"{label}tracebus timeline",
                   (*cli, "timeline", str(trace), "-o", page), page, path, page=True),
        ]  # fmt: skip
    try:
        import duckdb  # noqa: F401
    except ImportError:
        print("duckdb is not installed (pip install -e '.[bench]'): its row is left out")
    else:
        chosen.append(Reader("DuckDB read_json + group by event_type", (python, "-c", DUCKDB,
                                                                        str(trace))))  # fmt: skip
    chosen.append(Reader("msgspec 15-line loop", (python, "-c", MSGSPEC_LOOP, str(trace))))
    return chosen


def measure(reader: Reader) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if reader.pythonpath is not None:
        env["PYTHONPATH"] = reader.pythonpath
    started = time.perf_counter()
    child = subprocess.Popen(
        reader.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    assert child.stderr is not None
    errors = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    result: dict[str, Any] = {
        "name": reader.name,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "exit_code": code,
    }
    if code != 0:
        result["error"] = errors.strip().splitlines()[-1:] or [f"exit {code}"]
    if reader.output is not None and os.path.exists(reader.output):
        result["output_mib"] = round(os.path.getsize(reader.output) / 2**20, 1)
        if reader.page and code == 0:
            result.update(open_page(reader.output))
        os.unlink(reader.output)
    return result


def old_sources(commit: str, into: Path) -> Path | None:
    """The package as it was at ``commit``, extracted under ``into``; None without git."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "src"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"the readers of {commit} are left out ({exc})")
        return None
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| reader | time | CPU | peak RSS | output | page's first frame | zoom frame |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        output = f"{row['output_mib']} MiB" if "output_mib" in row else ""
        time_cell = f"{row['seconds']:.2f} s" if row["exit_code"] == 0 else "failed"
        first = f"{row['first_frame_ms'] / 1000:.2f} s" if "first_frame_ms" in row else ""
        zoom = ""
        if "zoom_in_frame_ms" in row:
            zoom = f"{row['zoom_in_frame_ms']:.0f} / {row['zoom_out_frame_ms']:.0f} ms"
        lines.append(
            f"| {row['name']} | {time_cell} | {row['cpu_seconds']:.2f} s "
            f"| {row['peak_rss_mib']:.0f} MiB | {output} | {first} | {zoom} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=500_000)
    parser.add_argument("--old", default=OLD_COMMIT, help="the commit whose readers to time too")
    parser.add_argument("--no-old", action="store_true", help="leave the old readers out")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--only", default="", help="comma-separated words of the readers to time")
    args = parser.parse_args()
    only = [word for word in args.only.split(",") if word]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tracebus-readers-") as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", WRITE, str(work / "run"), str(args.nodes)], check=True
        )
        write_seconds = time.perf_counter() - started
        (trace,) = (work / "run" / "traces").glob("*.jsonl")
        trace_mib = trace.stat().st_size / 2**20
        print(f"wrote {args.nodes} nodes, {trace_mib:.0f} MiB of trace, in {write_seconds:.1f} s")
        old = None if args.no_old else old_sources(args.old, work)
        rows = []
        for reader in readers(trace, work, old):
            if only and not any(word in reader.name for word in only):
                continue
            row = measure(reader)
            rows.append(row)
            print(f"  {row['name']}: {row['seconds']:.2f} s, {row['peak_rss_mib']:.0f} MiB")
        shutil.rmtree(work / "run")
    load_after = os.getloadavg()
    report = {
        "nodes": args.nodes,
        "events": 2 * args.nodes + 2,
        "trace_mib": round(trace_mib, 1),
        "write_seconds": round(write_seconds, 2),
        "old_commit": None if args.no_old else args.old,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "only": only or None,
        "readers": rows,
    }
    text = table(rows)
    heading = (
        f"{args.nodes} nodes ({report['events']} events, trace {trace_mib:.0f} MiB, written in "
        f"{write_seconds:.1f} s); {report['cpus']} CPUs, load average {load_before[0]:.1f} "
        f"before, {load_after[0]:.1f} after"
    )
    print(f"\n{heading}\n\n{text}")
    args.results.mkdir(parents=True, exist_ok=True)
    stem = "readers-only" if only else "readers"
    (args.results / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / f"{stem}.md").write_text(f"# Readers\n\n{heading}\n\n{text}\n")


if __name__ == "__main__":
    main()
