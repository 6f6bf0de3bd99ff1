// tracebus watch: the runs list and a run's page, kept up to date by Server-Sent Events.
// Every stream begins with the whole state (reset), so a reconnection makes the page whole.
"use strict";

// the timeline's colours (timeline.css)
const COLORS = {
  success: "#2e9e5b", failed: "#d7263d", skipped: "#9aa0a6", running: "#e8a317",
};
const state = document.getElementById("state");

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function seconds(value) {
  if (value === null || value === undefined) return "-";
  if (value >= 120) return `${value.toFixed(1)}s (${(value / 60).toFixed(1)}m)`;
  if (value >= 1) return `${value.toFixed(2)}s`;
  return `${(value * 1000).toFixed(1)}ms`;
}

function usd(value) {
  return value === null || value === undefined ? "unknown" : `$${value.toFixed(4)}`;
}

function listen(url, onUpdate) {
  const badge = document.getElementById("connection") || document.getElementById("status");
  const source = new EventSource(url);
  source.onmessage = (message) => {
    const update = JSON.parse(message.data);
    state.dataset.updates = String(Number(state.dataset.updates) + 1);
    onUpdate(update);
  };
  source.onerror = () => {
    if (badge.id === "connection" || badge.dataset.final !== "yes") {
      badge.textContent = "reconnecting";
      badge.className = "badge offline";
    }
  };
  source.onopen = () => {
    if (badge.id === "connection") {
      badge.textContent = "live";
      badge.className = "badge running";
    }
  };
}

// ---- the runs list -------------------------------------------------------------------------

function runsPage() {
  const body = document.querySelector("#runs tbody");
  listen("/events/runs", (update) => {
    const rows = update.runs.map(runRow);
    body.replaceChildren(...rows);
    document.getElementById("empty").hidden = rows.length > 0;
    state.dataset.runs = String(update.runs.length);
    state.dataset.running = String(update.runs.filter((r) => r.status === "running").length);
  });
}

function cell(content, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  return td;
}

function when(moment) {
  const today = moment.toDateString() === new Date().toDateString();
  return today ? moment.toLocaleTimeString() : moment.toLocaleString();
}

function runRow(run) {
  const tr = document.createElement("tr");
  tr.dataset.run = run.run_id || "";
  tr.dataset.status = run.status;
  const badge = document.createElement("span");
  const failed = run.status === "complete" && run.nodes_failed > 0;
  badge.className = `badge ${failed ? "complete-with-failures" : run.status}`;
  badge.textContent = failed ? `complete, ${run.nodes_failed} failed` : run.status;
  const link = document.createElement("a");
  link.href = `/run/${run.address}`;
  link.textContent = run.workflow_id || "(unnamed workflow)";
  const done = run.nodes_ok + run.nodes_failed + run.nodes_skipped;
  const total = Math.max(run.total_nodes || 0, done + run.nodes_unfinished);
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.title = `${done} of ${total} nodes ended`;
  for (const [count, color] of [[run.nodes_ok, COLORS.success], [run.nodes_failed, COLORS.failed],
    [run.nodes_skipped, COLORS.skipped], [run.nodes_unfinished, "transparent"]]) {
    const part = document.createElement("span");
    part.style.width = total ? `${(100 * count) / total}%` : "0";
    part.style.background = color;
    bar.append(part);
  }
  const started = run.started ? when(new Date(run.started)) : "-";
  tr.append(
    cell(badge), cell(link), cell((run.run_id || "-").slice(0, 8)), cell(started), cell(bar),
    cell(String(run.nodes_ok), "num"), cell(String(run.nodes_failed), "num"),
    cell(String(run.nodes_skipped), "num"), cell(String(run.nodes_unfinished), "num"),
    cell(seconds(run.wall_s), "num"), cell(usd(run.cost_usd), "num"),
    cell(`${run.input_tokens || 0} / ${run.output_tokens || 0}`, "num"),
  );
  return tr;
}

// ---- a run's page --------------------------------------------------------------------------
// The timeline is the one `tracebus timeline` draws (window.tracebusTimeline): mounted with
// the whole run, then handed each update's attempts.

function runPage() {
  const element = document.getElementById("timeline");
  const failures = document.getElementById("failures");
  const log = document.getElementById("log");
  let chart = null;

  function onUpdate(update) {
    if (update.reset) {
      failures.replaceChildren();
      log.textContent = "";
      text("failure-count", "0");
      chart = window.tracebusTimeline.mount(element, update.timeline);
    } else if (update.timeline) {
      chart.append(update.timeline);
    }
    window.watchTimeline = chart;
    for (const [node, error] of update.failures || []) addFailure(node, error);
    addLines(update.lines, update.lines_missed, update.problems);
    if (update.run) showFigures(update.run);
    if (chart) {
      const drawn = chart.drawn;
      state.dataset.bars = String(drawn.bars);
      state.dataset.shown = String(drawn.shown);
      state.dataset.drawn = String(drawn.drawn);
      state.dataset.pixels = String(drawn.pixels);
    }
  }

  function addFailure(node, error) {
    const item = document.createElement("li");
    const name = document.createElement("b");
    name.textContent = node;
    item.append(name, ` ${error || ""}`);
    failures.append(item);
    text("failure-count", String(failures.childElementCount));
  }

  function addLines(lines, missed, problems) {
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    let added = "";
    if (missed) added += `... ${missed} more lines (see the trace)\n`;
    for (const line of lines) added += `${line}\n`;
    for (const problem of problems) added += `! ${problem}\n`;
    if (added) {
      const all = log.textContent + added;
      const cut = all.length > 200000 ? all.indexOf("\n", all.length - 200000) + 1 : 0;
      log.textContent = all.slice(cut);
      if (stick) log.scrollTop = log.scrollHeight;
    }
  }

  function showFigures(run) {
    const c = run.counts;
    const done = c.nodes_completed + c.nodes_failed + c.nodes_skipped;
    const total = Math.max(run.total_nodes, c.nodes_seen);
    document.title = `${run.workflow_id || "run"} - tracebus watch`;
    text("workflow", run.workflow_id || "(unnamed workflow)");
    const badge = document.getElementById("status");
    const shown = run.status === "complete" && c.nodes_failed ? "complete-with-failures"
      : run.status;
    badge.className = `badge ${shown}`;
    badge.textContent = shown === "complete-with-failures" ? `complete, ${c.nodes_failed} failed`
      : run.status;
    badge.dataset.final = run.status === "running" ? "no" : "yes";
    text("nodes", `${c.nodes_completed} ok / ${c.nodes_failed} failed / ${c.nodes_skipped} `
      + `skipped of ${total}`);
    text("running", String(run.running));
    text("elapsed", seconds(run.elapsed));
    text("cost", usd(run.cost_usd));
    text("tokens", `${run.input_tokens} / ${run.output_tokens}`);
    text("events", String(run.events));
    text("run-id", run.run_id || "-");
    document.getElementById("progress-bar").style.width = total ? `${(100 * done) / total}%` : "0";
    const error = document.getElementById("run-error");
    error.hidden = !run.error;
    error.textContent = run.error ? `workflow error: ${run.error}` : "";
    state.dataset.status = run.status;
    state.dataset.done = String(done);
    state.dataset.failed = String(c.nodes_failed);
    state.dataset.running = String(run.running);
  }

  listen(`/events${location.pathname}`, onUpdate);
}

if (document.body.dataset.page === "runs") runsPage();
else runPage();
