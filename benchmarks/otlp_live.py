"""What sending a run to an OTLP/HTTP endpoint while it runs costs the run, side by side.

    python benchmarks/otlp_live.py [--nodes 20000] [--rounds 3] [--results DIR]

Each round runs the same workflow (a SyncObserver, ``--nodes`` nodes started and ended one
after the other, with output summaries) in a fresh process, twice: with no sink, and with
an ``OtlpExporter`` to a receiver in another process (``http.server``, decoding every
``ExportTraceServiceRequest`` with opentelemetry-proto and counting its spans). It reports
each side's median wall and CPU time of the run (from the observer's entry to its exit,
files fsynced and the exporter's spans sent), the spans the receiver got and those the
metadata counts as sent and dropped. Writes ``otlp_live.json`` and ``otlp_live.md`` to
``--results`` (default ``benchmarks/results``), with the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

spans = 0

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global spans
        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
        spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # how many spans so far
        body = str(spans).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

RUN = """
import json, sys, time
import tracebus
out, nodes, endpoint = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sinks = [tracebus.OtlpExporter(endpoint)] if endpoint != "-" else []
wall, cpu = time.perf_counter(), time.process_time()
with tracebus.SyncObserver("step_01_live", out, total_nodes=nodes, progress=False,
                           console=None, sinks=sinks) as obs:
    for i in range(nodes):
        node = f"node_{i:06d}"
        obs.node_start(node, i)
        obs.node_success(node, 0.001, "ab12cd34ef56ab78", {"node": i, "rows": i % 500}, 0.0001)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"wall": wall, "cpu": cpu, "otlp": (obs.metadata or {}).get("sinks", {})}))
"""


def run(out: Path, nodes: int, endpoint: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(out), str(nodes), endpoint],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert receiver.stdout is not None
        endpoint = f"http://127.0.0.1:{receiver.stdout.readline().strip()}"
        sides: dict[str, list[dict[str, Any]]] = {"no sink": [], "OtlpExporter": []}
        with tempfile.TemporaryDirectory(prefix="tracebus-otlp-") as scratch:
            for round_ in range(args.rounds):
                for name, target in (("no sink", "-"), ("OtlpExporter", endpoint)):
                    out = Path(scratch) / f"{round_}-{name.replace(' ', '_')}"
                    sides[name].append(run(out, args.nodes, target))
        import urllib.request

        with urllib.request.urlopen(endpoint) as response:
            received = int(response.read())
    finally:
        receiver.terminate()
        receiver.wait()
    rows = []
    for name, results in sides.items():
        otlp = [r["otlp"].get("otlp", {}) for r in results]
        rows.append(
            {
                "name": name,
                "wall_seconds": round(statistics.median(r["wall"] for r in results), 3),
                "cpu_seconds": round(statistics.median(r["cpu"] for r in results), 3),
                "spans_sent": sum(o.get("spans_sent", 0) for o in otlp),
                "spans_dropped": sum(o.get("spans_dropped", 0) for o in otlp),
            }
        )
    report = {
        "nodes": args.nodes,
        "rounds": args.rounds,
        "spans_received": received,
        "cpus": os.cpu_count(),
        "load_average_before": round(load_before, 1),
        "load_average_after": round(os.getloadavg()[0], 1),
        "rows": rows,
    }
    lines = [
        "# Live OTLP export",
        "",
        f"{args.nodes} nodes a run, median of {args.rounds} rounds; {os.cpu_count()} CPUs, "
        f"load average {report['load_average_before']} before, "
        f"{report['load_average_after']} after; the receiver got {received} spans",
        "",
        "| run | wall | CPU | spans sent | spans dropped |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {r['name']} | {r['wall_seconds']:.2f} s | {r['cpu_seconds']:.2f} s "
            f"| {r['spans_sent']} | {r['spans_dropped']} |"
            for r in rows
        ),
    ]
    print("\n".join(lines))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "otlp_live.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / "otlp_live.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
