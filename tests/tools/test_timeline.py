from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import Quiet
from tracebus._tools._attempts import read_attempts
from tracebus._tools._timeline import (
    INLINE_ATTEMPTS,
    TimelineFeed,
    renderer_script,
    write_timeline,
)
from tracebus.cli import main

from . import runs
from .browser import dump_dom, element_attributes, page_data, png_size, screenshot

#: Virtual time for a page to settle after its load: a compressed page is decoded after it.
SETTLE_MS = 20_000


def timeline(run: Path, tmp_path: Path, name: str = "timeline.html") -> Path:
    page = tmp_path / name
    assert main(["timeline", str(run), "-o", str(page)]) == 0
    return page


def drawn(page: Path, tmp_path: Path, settle_ms: int | None = None) -> dict[str, str]:
    """What the page's script recorded in #drawn after its first frame."""
    dom = dump_dom(page, tmp_path / "profile", settle_ms=settle_ms)
    return element_attributes(dom, "drawn")


def write_page(run: Path, page: Path, *, compress: bool | None = None) -> Path:
    facts, table = read_attempts(run)
    with page.open("w", encoding="utf-8") as output:
        write_timeline(facts, table, output, compress=compress)
    return page


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


#: What the first frame drew, less what depends on the time it took.
_DRAWN_KEYS = (
    "data-bars", "data-lanes", "data-rows", "data-drawn", "data-full", "data-aggregated",
    "data-failed-drawn", "data-failed-nodes", "data-shown", "data-pixels", "data-layout",
)  # fmt: skip


def test_compressed_page_draws_what_the_plain_page_draws(retry_dir: Path, tmp_path: Path) -> None:
    plain = write_page(retry_dir, tmp_path / "plain.html", compress=False)
    packed = write_page(retry_dir, tmp_path / "packed.html", compress=True)
    assert 'type="application/json"' in plain.read_text()
    assert 'type="application/x-deflate-raw-base64"' in packed.read_text()
    assert page_data(plain) == page_data(packed)
    seen = [drawn(page, tmp_path, SETTLE_MS) for page in (plain, packed)]
    assert [{k: d[k] for k in _DRAWN_KEYS} for d in seen] == [
        {k: seen[0][k] for k in _DRAWN_KEYS}
    ] * 2
    assert seen[0]["data-bars"] == "6" and seen[0]["data-shown"] == "6"


def test_data_is_columns_of_small_numbers(failure_dir: Path, tmp_path: Path) -> None:
    data = page_data(timeline(failure_dir, tmp_path))
    attempts, nodes = data["attempts"], data["nodes"]
    assert attempts["count"] == 5 and nodes["id"] == ["a", "b", "c", "d", "e"]
    assert nodes["index"] == [0, 1, 1, 1, 1]  # delta-coded: indices 0 to 4
    assert attempts["slot"] == [0, 1, 1, 1, 1]
    starts = [sum(attempts["start"][: k + 1]) for k in range(5)]
    assert starts == sorted(starts) and starts[0] >= 0  # µs from the workflow's start
    ends = [start + length for start, length in zip(starts, attempts["length"], strict=True)]
    assert all(start <= end <= data["run"]["span"] for start, end in zip(starts, ends, strict=True))
    failed = data["run"]["statuses"].index("failed")
    assert [attempts["status"][k] == failed for k in range(5)] == [False, True, False, True, False]
    assert attempts["message"][1] == "ValueError: bad input in b"
    assert data["run"]["counts"]["nodes_failed"] == 2


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100,000 nodes on 4 workers, one in 10 failed."""
    out = tmp_path_factory.mktemp("wide") / "run"
    return runs.synthetic_run(out, nodes=100_000, workers=4, fail_every=10)


def test_zoomed_out_failures_are_drawn_in_proportion(wide_run: Path, tmp_path: Path) -> None:
    page = timeline(wide_run, tmp_path)
    assert page.stat().st_size < 100_000 * 40  # under 40 bytes a node
    assert (
        100_000 > INLINE_ATTEMPTS and 'type="application/x-deflate-raw-base64"' in page.read_text()
    )
    assert page_data(page)["nodes"]["id"][-1] == "node_99999"
    result = drawn(page, tmp_path, SETTLE_MS)
    assert result["data-bars"] == "100000" and result["data-drawn"] == "100000"
    # some 25,000 bars a lane on 1,300 pixels: drawn as per-pixel shares
    assert int(result["data-aggregated"]) > 99_000
    assert result["data-run-failed-share"] == "0.1000"
    success, failed, skipped, running = map(int, result["data-pixels"].split())
    assert success > 10 * 1300 and skipped == running == 0
    # not a red wall over green: red covers about the share of the bars that failed
    assert 0.08 <= float(result["data-failed-share"]) <= 0.12
    assert 0.08 <= failed / (success + failed) <= 0.12


def test_append_adds_and_ends_attempts(tmp_path: Path) -> None:
    out = runs.synthetic_run(tmp_path / "run", nodes=40, workers=4)
    trace = runs.only_trace(out)
    lines = trace.read_bytes().splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if b'"node_start"' in line]
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(lines[: starts[20] + 1]))  # 20 ended, the 21st running
    page = write_page(cut, tmp_path / "live.html")
    before = drawn(page, tmp_path)
    assert before["data-bars"] == "21" and before["data-pixels"].split()[3] != "0"
    # what a live page is handed: the attempts that are new, or ended since
    feed = TimelineFeed()
    early, early_table = read_attempts(cut)
    feed.data(early, early_table)
    late, table = read_attempts(trace)
    known = {(early_table.slot[i], early_table.number[i]) for i in range(20)}
    rows = [i for i in range(len(table)) if (table.slot[i], table.number[i]) not in known]
    delta = feed.data(late, table, rows)
    assert delta["nodes"]["first"] == 21 and len(delta["nodes"]["id"]) == 19
    assert delta["attempts"]["count"] == 20
    script = f"<script>window.tracebusPage.append({json.dumps(delta)});</script>"
    page.write_text(page.read_text().replace("</body>", script + "</body>"))
    after = drawn(page, tmp_path)
    assert after["data-bars"] == "40" and after["data-drawn"] == "40"
    assert after["data-lanes"] == "4" and after["data-shown"] == "40"
    assert after["data-pixels"].split()[3] == "0"  # nothing running any more


def agent_run(out: Path) -> Path:
    """An agent's run, its clocks set ahead: plan, then the agent (two tool calls side by
    side, then a summary of both that calls a model), then a report of the agent's work.

    ==========  ===========  ================  =====================  ==========
    node        parent       seconds           depends on             model usage
    ==========  ===========  ================  =====================  ==========
    plan        -            0-1                                      1000/200, $0.01
    agent       -            1-9
    search      agent        1.5-4
    fetch       agent        2-5 (fails)
    summarize   agent        5.5-8.5           search, fetch
    llm         summarize    6-8                                      3000/800, $0.05
    report      -            9-10              agent
    ==========  ===========  ================  =====================  ==========
    """

    async def main() -> None:
        async with Quiet.Observer("agent_run", out, total_nodes=7) as obs:
            t0 = time.time() + 0.001
            made = obs.events
            plan: list[tuple[float, Any]] = [
                (0, made.node_start("plan", 0)),
                (0.5, made.usage("gpt-test", 1000, 200, 0.01, "plan", {})),
                (1, made.node_success("plan", 1.0, None, "a plan", 0.0)),
                (1, made.node_start("agent", 1)),
                (1.5, made.node_start("search", 2, parent="agent")),
                (2, made.node_start("fetch", 3, parent="agent")),
                (4, made.node_success("search", 2.5, "5ea7c4", {"hits": 3}, 0.002)),
                (5, made.node_failure("fetch", "TimeoutError: fetch took too long", 3.0)),
                (5.5, made.node_start("summarize", 4, "agent", ["search", "fetch"])),
                (6, made.node_start("llm", 5, parent="summarize")),
                (7, made.usage("claude-test", 3000, 800, 0.05, "llm", {})),
                (8, made.node_success("llm", 2.0, None, "three findings", 0.0)),
                (8.5, made.node_success("summarize", 3.0, None, None, 0.0)),
                (9, made.node_success("agent", 8.0, None, None, 0.0)),
                (9, made.node_start("report", 6, None, ["agent"])),
                (10, made.node_success("report", 1.0, None, "done", 0.001)),
            ]
            for at, event in plan:
                event.epoch_seconds = t0 + at
                await obs.emit(event)

    anyio.run(main)
    return out


def test_children_are_drawn_under_their_parent(tmp_path: Path) -> None:
    page = timeline(agent_run(tmp_path / "run"), tmp_path)
    data = page_data(page)
    ids = data["nodes"]["id"]
    parents = {ids[k]: ids[p] for k, p in enumerate(data["nodes"]["parent"]) if p >= 0}
    assert parents == {
        "search": "agent",
        "fetch": "agent",
        "summarize": "agent",
        "llm": "summarize",
    }
    result = drawn(page, tmp_path)
    # lane 1: plan, agent, report; under it the agent's children on two lanes (search then
    # summarize, fetch beside them), and under summarize's lane its model call
    rows = dict(item.split("@") for item in result["data-layout"].split())
    assert rows == {
        "plan": "0:0", "agent": "0:0", "report": "0:0",
        "search": "1:1", "summarize": "1:1", "llm": "2:2",
        "fetch": "3:1",
    }  # fmt: skip
    assert result["data-rows"] == "4" and result["data-lanes"] == "1"
    assert result["data-shown"] == "7" and result["data-collapsed"] == ""


def test_collapsed_parent_hides_its_children(tmp_path: Path) -> None:
    page = timeline(agent_run(tmp_path / "run"), tmp_path)
    dom = dump_dom(page, tmp_path / "profile", fragment="collapse=summarize")
    result = element_attributes(dom, "drawn")
    assert result["data-collapsed"] == "summarize" and result["data-rows"] == "3"
    assert "llm@hidden" in result["data-layout"] and result["data-drawn"] == "6"


_CLICK_TRIANGLE = """
<script>
(function () {
  const page = window.tracebusPage, out = document.getElementById("drawn");
  const canvas = document.getElementById("canvas"), box = canvas.getBoundingClientRect();
  const click = ([x, y, w, h], dx) => {
    const at = { clientX: box.left + x + dx, clientY: box.top + y + h / 2, bubbles: true };
    canvas.dispatchEvent(new MouseEvent("mousedown", at));
    canvas.dispatchEvent(new MouseEvent("mouseup", at));
  };
  click(page.rectOf("agent"), 5);  // on the triangle at the bar's left end
  out.dataset.afterCollapse = out.dataset.rows + " " + out.dataset.collapsed;
  out.dataset.agentTip = page.describe("agent");
  click(page.rectOf("agent"), 5);
  out.dataset.afterExpand = out.dataset.rows + " " + (out.dataset.collapsed || "-");
  click(page.rectOf("llm"), page.rectOf("llm")[2] / 2);  // the middle: details
  out.dataset.clicked = document.getElementById("details").textContent;
  const edges = document.querySelector('[data-role="edges"]');
  out.dataset.edgesOn = out.dataset.edges;
  edges.checked = false;
  edges.dispatchEvent(new Event("change"));
  out.dataset.edgesOff = out.dataset.edges;
})();
</script>
"""


def test_clicks_collapse_and_expand_and_edges_toggle(tmp_path: Path) -> None:
    page = timeline(agent_run(tmp_path / "run"), tmp_path)
    page.write_text(page.read_text().replace("</body>", _CLICK_TRIANGLE + "</body>"))
    result = drawn(page, tmp_path)
    assert result["data-after-collapse"] == "1 agent"
    assert "children  collapsed (4 attempts)" in result["data-agent-tip"]
    assert result["data-after-expand"] == "4 -"
    # summarize waits for search and fetch, report for agent: three edges, then none
    assert result["data-edges-on"] == "3" and result["data-edges-off"] == "0"
    clicked = result["data-clicked"]
    assert clicked.startswith("llm  (index 5)") and "parent    summarize" in clicked
    assert "tokens    3000 in / 800 out   usage cost $0.050000" in clicked
    assert "output    three findings" in clicked


def test_dependencies_tokens_and_cost_curve(tmp_path: Path) -> None:
    page = timeline(agent_run(tmp_path / "run"), tmp_path)
    data = page_data(page)
    ids = data["nodes"]["id"]
    depends = {
        ids[k]: [ids[d] for d in upstream]
        for k, upstream in enumerate(data["nodes"]["depends"])
        if upstream
    }
    assert depends == {"summarize": ["search", "fetch"], "report": ["agent"]}
    attempts = data["attempts"]
    order = [ids[s] for s in _undelta(attempts["slot"])]
    tokens = {
        node: (attempts["input_tokens"][k], attempts["output_tokens"][k], attempts["usage_cost"][k])
        for k, node in enumerate(order)
        if attempts["input_tokens"][k]
    }
    assert tokens == {"plan": (1000, 200, 0.01), "llm": (3000, 800, 0.05)}
    result = drawn(page, tmp_path)
    assert result["data-edges"] == "3"
    # node costs (0.002 + 0.001) and model calls (0.01 + 0.05), summed along the time axis
    assert result["data-cost-total"] == "0.063000"
    assert int(result["data-cost-inked"]) > 1000
    assert "$0.0630" in page.read_text() or "0.0630" in result["data-cost-total"]


def test_screenshot_of_an_agent_run(tmp_path: Path) -> None:
    page = timeline(agent_run(tmp_path / "run"), tmp_path)
    png = screenshot(page, tmp_path / "profile")
    assert png_size(png) == (1400, 900) and png.stat().st_size > 20_000
    result = drawn(page, tmp_path)
    assert result["data-shown"] == "7" and result["data-failed-shown"] == "1"


def _undelta(values: list[int]) -> list[int]:
    total, out = 0, []
    for value in values:
        total += value
        out.append(total)
    return out


def test_another_page_mounts_the_renderer_and_feeds_it(tmp_path: Path) -> None:
    out = runs.synthetic_run(tmp_path / "run", nodes=12, workers=3, fail_every=4)
    facts, table = read_attempts(out)
    feed = TimelineFeed()
    first = feed.data(facts, table, [i for i in range(len(table)) if table.slot[i] < 6])
    rest = feed.data(facts, table, [i for i in range(len(table)) if table.slot[i] >= 6])
    renderer = renderer_script()
    assert "</script" not in renderer.lower()
    page = tmp_path / "other.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "script-src 'unsafe-inline'; style-src 'unsafe-inline'\"></head><body>"
        "<h1>live</h1><div id='chart'></div>"
        f"<script>{renderer}</script><script>"
        "const handle = window.tracebusTimeline.mount(document.getElementById('chart'), "
        f"{json.dumps(first)});"
        "document.body.dataset.first = handle.drawn.bars + ' ' + handle.drawn.failedDrawn;"
        f"handle.append({json.dumps(rest)});"
        "</script></body></html>"
    )
    dom = dump_dom(page, tmp_path / "profile")
    assert 'data-first="6 1"' in dom
    result = element_attributes(dom, "drawn")
    assert result["data-bars"] == "12" and result["data-shown"] == "12"
    assert result["data-failed-drawn"] == "3" and result["data-lanes"] == "3"
