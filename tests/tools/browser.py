"""Opening a page in Debian's headless Chromium and reading back its DOM (and the data a
timeline page carries)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

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


def run_chromium(page: Path, profile: Path, *action: str, fragment: str = "") -> str:
    address = page.as_uri() + (f"#{fragment}" if fragment else "")
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *action, address],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump_dom(page: Path, profile: Path, *, settle_ms: int | None = None, fragment: str = "") -> str:
    """The page's DOM as serialised after its load event (its scripts have run); with
    ``settle_ms``, after that much virtual time more, so that work the page does after its
    load (decompressing its data) is done; ``fragment`` is the address's ``#...``."""
    wait = () if settle_ms is None else (f"--virtual-time-budget={settle_ms}",)
    return run_chromium(page, profile, *wait, "--dump-dom", fragment=fragment)


def screenshot(page: Path, profile: Path, *, settle_ms: int | None = None) -> Path:
    """A PNG of the page as Chromium draws it (1400x900), beside the page."""
    png = page.with_suffix(".png")
    wait = () if settle_ms is None else (f"--virtual-time-budget={settle_ms}",)
    run_chromium(page, profile, *wait, f"--screenshot={png}")
    assert png.exists(), "chromium wrote no screenshot"
    return png


def png_size(png: Path) -> tuple[int, int]:
    """The width and height of a PNG image."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


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


_PART = '<script id="run-{part}" type="([^"]+)">(.*?)</script>'


def page_data(page: Path) -> dict[str, Any]:
    """The timeline data object a page carries: its two parts (JSON, or deflate-raw
    compressed) in one."""
    text = page.read_text()
    data, details = (_page_part(text, part) for part in ("data", "details"))
    data["attempts"].update(details)
    return data


def _page_part(text: str, part: str) -> dict[str, Any]:
    found = re.search(_PART.format(part=part), text, re.S)
    assert found, f"no run-{part} in the page"
    kind, body = found.groups()
    if kind == "application/json":
        data: dict[str, Any] = json.loads(body)
    else:
        assert kind == "application/x-deflate-raw-base64", kind
        data = json.loads(zlib.decompress(base64.b64decode(body), -15))
    return data
