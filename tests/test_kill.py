"""A process killed with SIGKILL mid-run leaves files read_trace reads."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import tracebus

FOREVER = textwrap.dedent(
    """
    import sys, anyio, tracebus

    async def main():
        async with tracebus.Observer("step_07_kill", sys.argv[1], progress=False) as obs:
            i = 0
            while True:
                async with obs.node(f"n{i}", i) as node:
                    node.output({"i": i})
                i += 1
                if i % 50 == 0:
                    await anyio.sleep(0.001)

    anyio.run(main)
    """
)


def test_killed_run_leaves_readable_trace(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-c", FOREVER, str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        traces: list[Path] = []
        while time.monotonic() < deadline:
            traces = list(out.glob("traces/*.jsonl"))
            if traces and traces[0].stat().st_size > 200_000:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    for trace_file in (traces[0], out / "audit" / "step_07" / "trace_07.jsonl"):
        events = list(tracebus.read_trace(trace_file))
        assert len(events) > 500
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[0]["event_type"] == "workflow_start"
        assert not (out / "audit" / "step_07" / "metadata_07.json").exists()
