"""The producer that docker/compose.yaml runs works against a real service."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import Service, run_files

EXAMPLE = Path(__file__).resolve().parents[2] / "docker" / "example_producer.py"


def test_example_producer_fills_one_run_from_worker_processes(service: Service) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env={**os.environ, "TRACEBUS_SOCKET": str(service.socket)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "100/100 nodes recorded by 4 worker processes" in done.stdout
    trace, metadata = run_files(service.out, "01")
    assert metadata["status"] == "complete"
    assert metadata["nodes_completed"] == metadata["total_nodes"] == 100
    assert len({event["producer"] for event in trace}) == 5
