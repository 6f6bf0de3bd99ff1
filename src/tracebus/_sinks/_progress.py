"""The live progress bar, driven by the writer once per batch."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import Literal, TextIO, TypeAlias

from .._stamping import IsoClock
from .._state import RunState
from .._text import printable

#: The observers' ``progress``: True, a bar of the finished nodes (succeeded, failed or
#: skipped); ``"succeeded"``, a bar of the succeeded nodes only, as the seed's bar was; False,
#: no bar.
ProgressOption: TypeAlias = bool | Literal["succeeded"]
PROGRESS_OPTIONS: tuple[ProgressOption, ...] = (True, False, "succeeded")

_ANSI = re.compile(r"\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])")
_SHOWN_IN_FLIGHT = 3


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class Progress:
    """A tqdm bar of done/total with the nodes in flight; yields a log line at most once a
    second (``log_every``) and a last one at close."""

    def __init__(
        self,
        state: RunState,
        *,
        file: TextIO | None = None,
        log_every: float = 1.0,
        succeeded_only: bool = False,
    ) -> None:
        from tqdm import tqdm  # only when a bar is drawn: importing tqdm takes ~15 ms

        self._state = state
        self._log_every = log_every
        self._last_log = time.monotonic()
        self._succeeded_only = succeeded_only
        self._bar = tqdm(
            total=state.total_nodes or None,
            desc=f"Executing {state.workflow_id}",
            unit="node",
            ncols=100,
            bar_format="{desc} |{bar}| [{n_fmt}/{total_fmt}] {postfix}",
            file=file if file is not None else sys.stderr,
            leave=True,
        )

    def update(self) -> str | None:
        """Move the bar to the state's figures; return a log line when one is due."""
        bar = self._bar
        bar.set_postfix_str(self._in_flight(), refresh=False)
        done = self._done()
        if done != bar.n:
            bar.update(done - bar.n)
        now = time.monotonic()
        if now - self._last_log < self._log_every:
            return None
        self._last_log = now
        return self.text()

    def text(self) -> str:
        """The bar as plain text, ANSI codes stripped."""
        return strip_ansi(self._bar.format_meter(**self._bar.format_dict)).strip()

    def close(self) -> str:
        """Draw the final state, close the bar, return the last log line."""
        self._bar.set_postfix_str(self._in_flight(), refresh=False)
        self._bar.n = self._done()
        line = self.text()
        self._bar.close()
        return line

    def _done(self) -> int:
        state = self._state
        return state.nodes_completed if self._succeeded_only else state.nodes_done

    def _in_flight(self) -> str:
        running = self._state.in_flight
        if not running:
            return ""
        names = [printable(name) for name in list(running)[-_SHOWN_IN_FLIGHT:]]
        more = len(running) - len(names)
        return "running: " + ", ".join(names) + (f" +{more}" if more else "")


class ProgressLines:
    """A run's progress bar, drawn on stderr from its writer, and the lines it adds to the log.

    A terminal that fails stops the bar, not the run: the error goes to ``failed``.
    """

    def __init__(
        self, state: RunState, option: ProgressOption, failed: Callable[[BaseException], None]
    ) -> None:
        self._state = state
        self._option = option
        self._failed = failed
        self._bar: Progress | None = None
        self._iso = IsoClock()

    def start(self) -> None:
        """Open the bar, unless the option says none."""
        if self._option:
            self._safely(self._open)

    def update(self) -> str | None:
        """Move the bar; the log line due, if one is."""
        if self._bar is None:
            return None
        line = self._safely(self._bar.update)
        return None if line is None else self._line(line)

    def close(self) -> str | None:
        """Close the bar; its last log line, if one was open."""
        bar, self._bar = self._bar, None
        if bar is None:
            return None
        line = self._safely(bar.close)
        return None if line is None else self._line(line)

    def _open(self) -> None:
        self._bar = Progress(self._state, succeeded_only=self._option == "succeeded")

    def _safely(self, draw: Callable[[], str | None]) -> str | None:
        try:
            return draw()
        except Exception as exc:  # stderr closed, an encoding that cannot show the bar
            self._bar = None
            self._failed(exc)
            return None

    def _line(self, text: str) -> str:
        return f"[{self._iso(time.time())}] PROGRESS {printable(text)}\n"
