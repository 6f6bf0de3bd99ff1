from __future__ import annotations

import re
from pathlib import Path

import pytest

from tracebus.cli import main

from . import runs
from .browser import dump_dom, element_attributes


def timeline(run: Path, tmp_path: Path) -> Path:
    page = tmp_path / "timeline.html"
    assert main(["timeline", str(run), "-o", str(page)]) == 0
    return page


def drawn(page: Path, tmp_path: Path) -> dict[str, str]:
    """What the page's script recorded in #drawn after its first frame."""
    dom = dump_dom(page, tmp_path / "profile")
    return element_attributes(dom, "drawn")


def test_page_is_self_contained(failure_dir: Path, tmp_path: Path) -> None:
    html = timeline(failure_dir, tmp_path).read_text()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"<(link|img|iframe)\b", html)
    assert not re.search(r"""\b(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<script src" not in html and "@import" not in html
    assert "fetch(" not in html and "XMLHttpRequest" not in html


def test_every_node_drawn_and_failures_shown_as_failed(failure_dir: Path, tmp_path: Path) -> None:
    page = timeline(failure_dir, tmp_path)
    result = drawn(page, tmp_path)
    assert result["data-bars"] == "5" and result["data-drawn"] == "5"
    assert result["data-lanes"] == "1"
    # read back from the canvas: every bar's pixels have its status colour
    assert result["data-shown"] == "5" and result["data-not-shown"] == ""
    assert sorted(result["data-failed-nodes"].split()) == ["b", "d"]
    assert result["data-failed-drawn"] == "2" and result["data-failed-shown"] == "2"
    html = page.read_text()
    assert 'class="badge complete-with-failures">complete, 2 failed<' in html
    assert 'data-node="b"' in html and "ValueError: bad input in b" in html


def test_attempts_and_statuses(retry_dir: Path, tmp_path: Path) -> None:
    result = drawn(timeline(retry_dir, tmp_path), tmp_path)
    # fetch x2, parse, upload x2, cache (skipped)
    assert result["data-bars"] == "6" and result["data-drawn"] == "6"
    assert result["data-shown"] == "6"
    assert sorted(result["data-failed-nodes"].split()) == ["fetch", "upload", "upload"]


@pytest.mark.parametrize("kind", ["empty", "seed", "killed"])
def test_other_fixture_runs(kind: str, tmp_path: Path) -> None:
    if kind == "killed":
        out = runs.success_run(tmp_path / kind)
        trace = runs.only_trace(out)
        lines = trace.read_bytes().splitlines(keepends=True)
        cut = next(i for i, line in enumerate(lines) if b'"node_success"' in line)
        trace.write_bytes(b"".join(lines[:cut]) + b'{"event_type":"no')
    else:
        out = {"empty": runs.empty_run, "seed": runs.seed_run}[kind](tmp_path / kind)
    result = drawn(timeline(out, tmp_path), tmp_path)
    bars = {"empty": "0", "seed": "4", "killed": "3"}[kind]
    assert result["data-bars"] == bars and result["data-drawn"] == bars
    assert result["data-shown"] == bars


def test_markup_in_node_ids_stays_data(tmp_path: Path) -> None:
    out = tmp_path / "hostile"
    seed = runs.SeedWriter(out, "wf", total_nodes=2)
    seed.node("</script><script>document.title='owned'</script>", 1, 0.5)
    seed.node("<b>&amp;", 2, 0.5, error="</details><h1>x</h1>")
    seed.complete()
    page = timeline(out, tmp_path)
    dom = dump_dom(page, tmp_path / "profile")
    assert "<title>wf timeline</title>" in dom
    assert "<h1>x</h1>" not in dom
    result = element_attributes(dom, "drawn")
    assert result["data-bars"] == "2" and result["data-shown"] == "2"


def test_ten_thousand_nodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = runs.synthetic_run(tmp_path / "big", nodes=10_000, workers=32, fail_every=100)
    page = timeline(out, tmp_path)
    result = drawn(page, tmp_path)
    assert result["data-bars"] == "10000" and result["data-drawn"] == "10000"
    assert result["data-lanes"] == "32"
    assert result["data-failed-drawn"] == "100"
    with capsys.disabled():
        size = page.stat().st_size / 1e6
        print(f"\n10,000 nodes: {size:.1f} MB page, first frame {result['data-render-ms']} ms")


_INTERACT = """
<script>
(function () {
  const out = document.getElementById("drawn");
  const [x, y, w, h] = out.dataset.firstFailedRect.split(",").map(Number);
  const canvas = document.getElementById("canvas");
  const box = canvas.getBoundingClientRect();
  const at = { clientX: box.left + x + w / 2, clientY: box.top + y + h / 2, bubbles: true };
  canvas.dispatchEvent(new MouseEvent("mousemove", at));
  out.dataset.tip = document.getElementById("tip").textContent;
  canvas.dispatchEvent(new MouseEvent("mousedown", at));
  canvas.dispatchEvent(new MouseEvent("mouseup", at));
  out.dataset.clicked = document.getElementById("details").textContent;
  const find = document.getElementById("find");
  find.value = "d";
  find.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
  out.dataset.found = document.getElementById("details").textContent;
})();
</script>
"""


def test_hover_click_and_find_show_details(failure_dir: Path, tmp_path: Path) -> None:
    page = timeline(failure_dir, tmp_path)
    # the user's gestures, replayed by a script added after the page's own
    page.write_text(page.read_text().replace("</body>", _INTERACT + "</body>"))
    result = drawn(page, tmp_path)
    for shown in (result["data-tip"], result["data-clicked"]):
        assert shown.startswith("b  (index 1)")
        assert "status    failed" in shown and "error     ValueError: bad input in b" in shown
        assert "duration  " in shown
    assert result["data-found"].startswith("d  (index 3)")
