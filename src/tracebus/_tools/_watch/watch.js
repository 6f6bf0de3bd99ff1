// tracebus watch: the runs list and a run's page, kept up to date by Server-Sent Events.
// Every stream begins with the whole state (reset), so a reconnection makes the page whole.
"use strict";

const COLORS = {
  success: "#2e9e5b", failed: "#d64545", skipped: "#9aa0a6", running: "#3b82f6",
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
  const started = run.started ? when(new Date(run.started * 1000)) : "-";
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

function runPage() {
  const chart = document.getElementById("chart");
  const failures = document.getElementById("failures");
  const log = document.getElementById("log");
  let run = null;
  let statuses = [];
  let received = 0;
  let bars = newBars();
  let running = { node: [], lane: [], start: [] };

  function newBars() {
    return { node: [], lane: [], start: [], end: [], status: [], error: [], cost: [] };
  }

  function onUpdate(update) {
    if (update.reset) {
      bars = newBars();
      failures.replaceChildren();
      log.textContent = "";
    }
    run = update.run;
    statuses = update.statuses;
    received = performance.now();
    const ended = update.ended;
    for (const key of Object.keys(bars)) bars[key].push(...ended[key]);
    running = update.running;
    for (let i = 0; i < ended.node.length; i++) {
      if (statuses[ended.status[i]] === "failed") addFailure(ended.node[i], ended.error[i]);
    }
    addLines(update.lines, update.lines_missed, update.problems);
    showFigures();
    draw();
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

  function showFigures() {
    const c = run.counts;
    const done = c.nodes_completed + c.nodes_failed + c.nodes_skipped;
    const total = Math.max(run.total_nodes, c.nodes_seen);
    document.title = `${run.workflow_id || "run"} - tracebus watch`;
    text("workflow", run.workflow_id || "(unnamed workflow)");
    const badge = document.getElementById("status");
    const state_ = run.status === "complete" && c.nodes_failed ? "complete-with-failures"
      : run.status;
    badge.className = `badge ${state_}`;
    badge.textContent = state_ === "complete-with-failures" ? `complete, ${c.nodes_failed} failed`
      : run.status;
    badge.dataset.final = run.status === "running" ? "no" : "yes";
    text("nodes", `${c.nodes_completed} ok / ${c.nodes_failed} failed / ${c.nodes_skipped} `
      + `skipped of ${total}`);
    text("running", String(running.node.length));
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
    state.dataset.running = String(running.node.length);
    state.dataset.bars = String(bars.node.length);
    state.dataset.lanes = String(run.lanes);
  }

  // Seconds since the run's first event that the chart spans: while the run goes on, the
  // clock keeps moving between updates, so running bars grow.
  function span() {
    let end = run.elapsed;
    if (run.status === "running") end += (performance.now() - received) / 1000;
    return Math.max(end, 0.001);
  }

  function draw() {
    if (run === null) return;
    const ratio = window.devicePixelRatio || 1;
    const width = chart.clientWidth;
    const lanes = Math.max(run.lanes, 1);
    const lane = Math.max(2, Math.min(18, Math.floor(480 / lanes)));
    const height = Math.max(60, lanes * lane + 24);
    chart.style.height = `${height}px`;
    chart.width = Math.round(width * ratio);
    chart.height = Math.round(height * ratio);
    const g = chart.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const total = span();
    const x = (t) => (Math.max(0, t) / total) * (width - 2) + 1;
    const gap = lane > 6 ? 2 : lane > 3 ? 1 : 0;
    g.fillStyle = "#656d76";
    g.font = "11px system-ui, sans-serif";
    for (let i = 0; i <= 4; i++) {
      const at = (total * i) / 4;
      g.fillText(seconds(at), Math.min(x(at), width - 48), height - 6);
    }
    const probes = [];
    for (let i = 0; i < bars.node.length; i++) {
      const status = statuses[bars.status[i]];
      const left = x(bars.start[i]);
      const w = Math.max(1.5, x(bars.end[i]) - left);
      g.fillStyle = COLORS[status];
      g.fillRect(left, bars.lane[i] * lane + gap / 2, w, lane - gap);
      if (probes.length < 200) probes.push([left + w / 2, bars.lane[i] * lane + lane / 2, status]);
    }
    const now = total;
    g.fillStyle = COLORS.running;
    for (let i = 0; i < running.node.length; i++) {
      const left = x(running.start[i]);
      g.fillRect(left, running.lane[i] * lane + gap / 2, Math.max(1.5, x(now) - left), lane - gap);
    }
    // read back from the canvas: how many bars show their status colour
    let shown = 0;
    for (const [px, py, status] of probes) {
      const [r, gr, b] = g.getImageData(Math.floor(px * ratio), Math.floor(py * ratio), 1, 1).data;
      const want = COLORS[status];
      const hex = `#${[r, gr, b].map((v) => v.toString(16).padStart(2, "0")).join("")}`;
      if (hex === want) shown += 1;
    }
    state.dataset.shown = String(shown);
    state.dataset.probed = String(probes.length);
  }

  listen(`/events${location.pathname}`, onUpdate);
  setInterval(() => { if (run !== null && run.status === "running") draw(); }, 250);
  window.addEventListener("resize", draw);
}

if (document.body.dataset.page === "runs") runsPage();
else runPage();
