"""No observability at all: the time every other peer is measured against."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class NothingAsync:
    def __init__(self, out: Path, nodes: int) -> None:
        pass

    async def open(self) -> None:
        pass

    async def node_start(self, node_id: str, index: int) -> None:
        pass

    async def node_success(
        self, node_id: str, index: int, duration: float, output_hash: str, summary: Any
    ) -> None:
        pass

    async def close(self) -> None:
        pass

    def trace_files(self) -> list[Path]:
        return []


class NothingThreads:
    def __init__(self, out: Path, nodes: int) -> None:
        pass

    def open(self) -> None:
        pass

    def node_start(self, node_id: str, index: int) -> None:
        pass

    def node_success(
        self, node_id: str, index: int, duration: float, output_hash: str, summary: Any
    ) -> None:
        pass

    def close(self) -> None:
        pass

    def trace_files(self) -> list[Path]:
        return []
