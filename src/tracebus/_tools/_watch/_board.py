"""The runs list: every run under the watched directories, as ``tracebus runs`` lists them
(``find_runs``), scanned again at most every ``RESCAN`` seconds however many pages show it."""

from __future__ import annotations

import time

import anyio
import anyio.to_thread

from ..._exceptions import TracebusError
from .._runs import find_runs, output_dirs
from ._live import encode
from ._paths import Roots

#: Seconds between two scans of the directories.
RESCAN = 0.5


class Board:
    """The runs list, shared by every page that shows it: ``version`` grows when it changes."""

    def __init__(self, roots: Roots) -> None:
        self.roots = roots
        self.version = 0
        self.encoded = encode({"runs": []})
        self._scanned = float("-inf")
        self._lock = anyio.Lock()

    async def refresh(self) -> None:
        """Scan the directories again unless that was done less than ``RESCAN`` ago."""
        async with self._lock:
            if time.monotonic() - self._scanned < RESCAN:
                return
            encoded = await anyio.to_thread.run_sync(self._scan)
            self._scanned = time.monotonic()
            if encoded != self.encoded:
                self.encoded = encoded
                self.version += 1

    def _scan(self) -> bytes:
        usable = []
        for directory in self.roots.given:
            try:
                output_dirs(directory)
            except TracebusError:
                continue  # not there yet, or not an output directory: no runs
            usable.append(directory)
        runs = []
        for run in find_runs(usable):
            address = self.roots.address_of(run.trace)
            if address is not None:
                runs.append({**run.to_json(), "address": address})
        return encode({"runs": runs})
