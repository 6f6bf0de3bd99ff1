"""A watch served by ``tracebus watch`` in its own process, runs written by other processes,
and headless Chromium driven through Debian's chromedriver."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from ..browser import FLAGS, chromium

ROOT = Path(__file__).parents[3]
CHROMEDRIVER = "/usr/bin/chromedriver"


def _python(*args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    return subprocess.Popen(
        [sys.executable, *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


class Writer:
    """A run written by another process, one command at a time (see ``writer.py``)."""

    def __init__(self, out: Path, workflow_id: str, total: int) -> None:
        self.process = _python(
            "-m", "tests.tools.watch.writer", str(out), workflow_id, str(total),
            stdin=subprocess.PIPE,
        )  # fmt: skip
        assert self._line() == "ready", self.process.stderr and self.process.stderr.read()

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def send(self, command: str) -> None:
        """Have the writer run ``command`` and wait until its events are in the files."""
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        expected = "ended" if command == "end" else "done"
        assert self._line() == expected, self.process.stderr and self.process.stderr.read()
        if command == "end":
            assert self.process.wait(timeout=30) == 0

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def writers() -> Iterator[list[Writer]]:
    made: list[Writer] = []
    yield made
    for writer in made:
        writer.close()


class Watch:
    """``tracebus watch ARGS`` in its own process; ``url`` is the address it printed."""

    def __init__(self, *args: str) -> None:
        self.process = _python("-m", "tracebus", "watch", *args)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        assert self.url.startswith("http://"), self.errors()

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rpartition(":")[2])

    def errors(self) -> str:
        self.stop()
        stderr: IO[str] | None = self.process.stderr
        return stderr.read() if stderr is not None else ""

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return code

    def close(self) -> None:
        self.stop()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    made: list[Watch] = []
    yield made
    for watch in made:
        watch.close()


def _chromedriver() -> str:
    found = CHROMEDRIVER if os.access(CHROMEDRIVER, os.X_OK) else shutil.which("chromedriver")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromedriver is missing: .ci/run installs Debian's chromium-driver")
        pytest.skip("chromedriver is not installed (apt-get install chromium-driver)")
    return found


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium, driven by Selenium through Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium()
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('profile')}")
    driver = webdriver.Chrome(service=Service(executable_path=_chromedriver()), options=options)
    try:
        yield driver
    finally:
        driver.quit()
