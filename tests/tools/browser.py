"""Opening a page in Debian's headless Chromium and reading back its DOM."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1400,900",
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def run_chromium(page: Path, profile: Path, *action: str) -> str:
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *action, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump_dom(page: Path, profile: Path) -> str:
    """The page's DOM as serialised after its load event (its scripts have run)."""
    return run_chromium(page, profile, "--dump-dom")


def element_attributes(dom: str, element_id: str) -> dict[str, str]:
    """The attributes of the element with ``id=element_id`` in ``dom``."""
    found: dict[str, str] = {}

    class Finder(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            values = {k: v or "" for k, v in attrs}
            if values.get("id") == element_id and not found:
                found.update(values)

    Finder().feed(dom)
    assert found, f"no element #{element_id} in the page"
    return found
