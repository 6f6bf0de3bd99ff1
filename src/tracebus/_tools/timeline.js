// The timeline renderer: window.tracebusTimeline.mount(element, data) -> handle, and
// window.tracebusTimeline.read(scriptElement) for data inline in a page; the data object
// and the handle are described in tracebus/_tools/_timeline.py. Its style is added to the
// page at the first mount; the status colours are the page's --ok, --failed, --skipped and
// --running when it sets them.
window.tracebusTimeline = (function () {
  "use strict";
  const FAILED = 1, SKIPPED = 2, RUNNING = 3;
  const AXIS = 26, NOTE_ROW = 8, GUTTER = 84, MIN_BAR = 2, COST_BAND = 36, TRI = 12;
  const EDGE_LIMIT = 4000, RECORD_ROWS = 500, CHECKED = 50000, COST_BINS = 1 << 20;
  const COST_INK = "#7b4fd6", EDGE_INK = "#3b6fd8";

  // The status colours are the page's own when it sets them (:where adds no specificity).
  const STYLE = `
  :where(:root) { --ok: #2e9e5b; --failed: #d7263d; --skipped: #9aa0a6; --running: #e8a317;
                  --muted: #5f6b7a; --line: #e3e7ee; }
  .tracebus-timeline .toolbar { display: flex; align-items: center; gap: 16px; padding: 6px 16px;
    border-bottom: 1px solid var(--line); flex-wrap: wrap; }
  .tracebus-timeline .legend span::before { content: ""; display: inline-block; width: 10px;
    height: 10px; margin-right: 4px; vertical-align: -1px; border-radius: 2px;
    background: var(--c); }
  .tracebus-timeline .legend span { margin-right: 10px; }
  .tracebus-timeline .hint, .tracebus-timeline .edges { color: var(--muted); }
  .tracebus-timeline button, .tracebus-timeline input { font: inherit; }
  .tracebus-timeline .chart { position: relative; }
  .tracebus-timeline canvas { display: block; width: 100%; cursor: crosshair; }
  .tracebus-timeline .tip { position: absolute; pointer-events: none; background: #1d2330;
    color: #fff; padding: 6px 8px; border-radius: 4px; font-size: 12px; max-width: 420px;
    white-space: pre-wrap; word-break: break-word; display: none; z-index: 2; }
  .tracebus-timeline .details { padding: 8px 16px; border-top: 1px solid var(--line);
    min-height: 48px; white-space: pre-wrap; font-family: ui-monospace, monospace;
    font-size: 12px; }`;

  function addStyle() {
    if (document.getElementById("tracebus-timeline-style")) return;
    const style = document.createElement("style");
    style.id = "tracebus-timeline-style";
    style.textContent = STYLE;
    document.head.appendChild(style);
  }

  const TOOLBAR = '<div class="toolbar"><div class="legend">' +
    '<span style="--c: var(--ok)">success</span><span style="--c: var(--failed)">failed</span>' +
    '<span style="--c: var(--skipped)">skipped</span><span style="--c: var(--running)">unfinished</span>' +
    '<span style="--c: ' + COST_INK + '">cumulative cost</span></div>' +
    '<button type="button" data-role="reset">Fit run</button>' +
    '<label>find node <input data-role="find" type="search" placeholder="node id" size="18"></label>' +
    '<label class="edges"><input data-role="edges" type="checkbox" checked> dependencies</label>' +
    '<span class="hint">wheel: zoom &middot; drag: pan &middot; shift+wheel: scroll rows &middot; ' +
    'click a bar: details &middot; click &#9662;: collapse children</span></div>' +
    '<div class="chart"><canvas data-role="canvas"></canvas><div data-role="tip" class="tip"></div></div>' +
    '<div data-role="details" class="details">Click a bar to see a node\'s details.</div>' +
    '<output data-role="drawn" hidden></output>';

  function undelta(values) {
    let sum = 0;
    for (let i = 0; i < values.length; i++) {
      if (values[i] !== null) { sum += values[i]; values[i] = sum; }
    }
    return values;
  }

  function fmt(us) {
    const abs = Math.abs(us);
    if (abs === 0) return "0";
    if (abs < 1000) return us.toFixed(0) + "\u00b5s";
    if (abs < 1e6) return (us / 1000).toFixed(abs < 1e4 ? 2 : 1).replace(/\.0+$/, "") + "ms";
    if (abs < 120e6) return (us / 1e6).toFixed(abs < 1e7 ? 3 : 2).replace(/\.?0+$/, "") + "s";
    const s = Math.round(us / 1e6);
    return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  }

  function niceStep(usPerPx) {
    const target = usPerPx * 90;
    const power = Math.pow(10, Math.floor(Math.log10(Math.max(target, 1))));
    for (const m of [1, 2, 5, 10]) if (power * m >= target) return power * m;
    return power * 10;
  }

  // A min-heap of (key, value) pairs in two arrays: the lanes' ends while laying out.
  function Heap() { this.k = []; this.v = []; }
  Heap.prototype.push = function (key, value) {
    const k = this.k, v = this.v;
    let i = k.length;
    k.push(key); v.push(value);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (k[p] < key || (k[p] === key && v[p] <= value)) break;
      k[i] = k[p]; v[i] = v[p]; i = p;
    }
    k[i] = key; v[i] = value;
  };
  Heap.prototype.pop = function () {
    const k = this.k, v = this.v, top = v[0];
    const key = k.pop(), value = v.pop();
    const n = k.length;
    if (n) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && (k[c + 1] < k[c] || (k[c + 1] === k[c] && v[c + 1] < v[c]))) c++;
        if (key < k[c] || (key === k[c] && value <= v[c])) break;
        k[i] = k[c]; v[i] = v[c]; i = c;
      }
      k[i] = key; v[i] = value;
    }
    return top;
  };

  function mount(element, data) {
    addStyle();
    element.classList.add("tracebus-timeline");
    element.innerHTML = TOOLBAR;
    const part = (role) => element.querySelector('[data-role="' + role + '"]');
    for (const role of ["canvas", "tip", "details", "find", "drawn"]) {
      if (!document.getElementById(role)) part(role).id = role;  // the page's single chart
    }
    const canvas = part("canvas"), tip = part("tip"), panel = part("details");
    const out = part("drawn"), edgesBox = part("edges");
    const ctx = canvas.getContext("2d");
    const css = getComputedStyle(document.documentElement);
    const colours = ["--ok", "--failed", "--skipped", "--running"].map(
      (name) => css.getPropertyValue(name).trim());

    // The run, its nodes (by slot) and attempts (rows), in plain arrays.
    const run = { origin: data.run.origin, span: 0, statuses: data.run.statuses };
    const N = { id: [], index: [], parent: [], depends: [] };
    const notes = [];
    let keys = null;       // "slot/attempt" -> row, made at the first append
    let sorted = true;     // rows in start order (a full object's are)
    const collapsed = new Set();

    const NODE_COLUMNS = ["index", "parent", "depends"];
    const ROW_COLUMNS = ["slot", "start", "end", "status", "attempt", "duration", "cost",
                         "hash", "output", "message", "input_tokens", "output_tokens",
                         "usage_cost"];
    const A = Object.fromEntries(ROW_COLUMNS.map((name) => [name, []]));
    let nested = false;  // some node has a parent

    function add(d) {
      const shift = Math.round((d.run.origin - run.origin) * 1e6);
      run.span = Math.max(run.span, d.run.span + shift);
      run.status = d.run.status;
      const n = d.nodes;
      if (n.index) undelta(n.index);
      for (const name of NODE_COLUMNS) {
        const values = n[name];
        if (!values) continue;
        if (N[name].length === 0 && n.first === 0) { N[name] = values; continue; }
        for (let k = 0; k < values.length; k++) N[name][n.first + k] = values[k];
      }
      if (n.first === 0 && N.id.length === 0) N.id = n.id;
      else for (let k = 0; k < n.id.length; k++) N.id[n.first + k] = n.id[k];
      if (n.parent && n.parent.some((p) => p >= 0)) nested = true;
      const a = d.attempts, m = a.count;
      undelta(a.slot);
      undelta(a.start);
      if (shift) for (let k = 0; k < m; k++) a.start[k] += shift;
      a.end = new Array(m);
      for (let k = 0; k < m; k++) a.end[k] = a.length[k] < 0 ? NaN : a.start[k] + a.length[k];
      if (A.slot.length === 0) {
        // the first object: its columns are the table (rows in start order)
        for (const name of ROW_COLUMNS) A[name] = a[name] || [];
      } else {
        if (keys === null) {
          keys = new Map();
          for (let i = 0; i < A.slot.length; i++) keys.set(A.slot[i] * 1048576 + A.attempt[i], i);
        }
        for (let k = 0; k < m; k++) {
          const key = a.slot[k] * 1048576 + a.attempt[k];
          let row = keys.get(key);
          if (row === undefined) {
            row = A.slot.length;
            keys.set(key, row);
            if (row > 0 && a.start[k] < A.start[row - 1]) sorted = false;
          } else if (a.start[k] !== A.start[row]) {
            sorted = false;
          }
          for (const name of ROW_COLUMNS) A[name][row] = a[name] ? a[name][k] : null;
        }
      }
      for (const note of d.notes || []) notes.push([note[0] + shift, note[1], note[2]]);
    }

    // The page's own second part: the detail columns of its first object's rows.
    function setDetails(columns) {
      for (const [name, values] of Object.entries(columns)) if (ROW_COLUMNS.includes(name)) A[name] = values;
    }

    const parentOf = (s) => (nested && N.parent[s] !== undefined ? N.parent[s] : -1);
    const text = (column, i) => (A[column][i] === undefined ? null : A[column][i]);

    const endOf = (i) => (A.end[i] === A.end[i] ? A.end[i] : Math.max(run.span, A.start[i]));

    // Layout: each group of siblings (the top-level nodes, or the children of the nodes on
    // one row) is laid on lanes so that no two on a lane overlap; a row's children follow it.
    let rows = [], rowOf = null, lanes = 0, byNode = null;
    let tries = null, lastOf = null, hidden = null, hasKids = null;
    let costTotal = 0, bins = null;

    function layout() {
      const count = A.slot.length, nodes = N.id.length;
      let order = new Int32Array(count);
      for (let i = 0; i < count; i++) order[i] = i;
      if (!sorted) order = Int32Array.from(Array.from(order).sort(byStart));
      tries = new Int32Array(nodes);
      lastOf = new Int32Array(nodes).fill(-1);
      hasKids = new Uint8Array(nodes);
      for (const i of order) {
        const s = A.slot[i];
        tries[s]++;
        if (lastOf[s] < 0 || endOf(i) >= endOf(lastOf[s])) lastOf[s] = i;
      }
      const kids = new Map();
      const roots = nested ? [] : order;
      if (nested) for (const i of order) {
        const p = parentOf(A.slot[i]);
        if (p >= 0 && p < nodes && p !== A.slot[i]) {
          hasKids[p] = 1;
          if (!kids.has(p)) kids.set(p, []);
          kids.get(p).push(i);
        } else {
          roots.push(i);
        }
      }
      rows = [];
      rowOf = new Int32Array(count).fill(-1);
      const opened = new Uint8Array(nodes);
      hidden = new Int32Array(nodes);
      const place = (group, depth, parentRow) => {
        const busy = new Heap(), free = new Heap(), bars = [];
        for (const i of group) {
          const start = A.start[i];
          while (busy.k.length && busy.k[0] <= start) free.push(busy.v[0], busy.pop());
          const lane = free.k.length ? free.pop() : bars.length;
          if (lane === bars.length) bars.push([]);
          busy.push(endOf(i), lane);
          bars[lane].push(i);
        }
        bars.forEach((list, lane) => {
          const here = rows.length;
          const label = parentRow < 0 ? "lane " + (lane + 1) : rows[parentRow].label + "." + (lane + 1);
          const row = { depth, label, bars: list, parents: [] };
          rows.push(row);
          for (const i of list) rowOf[i] = here;
          const children = [];
          if (nested) for (const i of list) {
            const s = A.slot[i];
            if (!hasKids[s] || opened[s]) continue;
            opened[s] = 1;
            row.parents.push(s);
            if (collapsed.has(s)) { hidden[s] = descendants(s, kids); continue; }
            for (const k of kids.get(s)) children.push(k);
          }
          if (children.length) place(children.sort(byStart), depth + 1, here);
        });
        return bars.length;
      };
      lanes = place(roots, 0, -1);
      // nodes whose parents name each other in a ring have no top-level ancestor: top level
      if (nested) {
        const stray = Array.from(order).filter((i) => rowOf[i] < 0 && !underCollapsed(A.slot[i]));
        if (stray.length) lanes += place(stray, 0, -1);
      }
      costTotal = 0;
      for (let i = 0; i < count; i++) costTotal += spent(i);
      if (costTotal > 0) costBins();
    }

    // What an attempt cost: its own cost and its node's model calls while it ran.
    function spent(i) {
      return (A.cost[i] > 0 ? A.cost[i] : 0) + (A.usage_cost[i] > 0 ? A.usage_cost[i] : 0);
    }

    function byStart(x, y) {
      return A.start[x] - A.start[y] || endOf(x) - endOf(y) || A.slot[x] - A.slot[y] ||
        A.attempt[x] - A.attempt[y];
    }

    function descendants(slot, kids) {
      let total = 0;
      const seen = new Set([slot]), todo = [slot];
      while (todo.length) {
        for (const i of kids.get(todo.pop()) || []) {
          total++;
          const s = A.slot[i];
          if (!seen.has(s)) { seen.add(s); todo.push(s); }
        }
      }
      return total;
    }

    function underCollapsed(slot) {
      for (let s = parentOf(slot), hops = 0; s >= 0 && hops < N.id.length; s = parentOf(s), hops++) {
        if (collapsed.has(s)) return true;
      }
      return false;
    }

    function slotOf(id) {
      if (byNode === null || byNode.size !== N.id.length) {
        byNode = new Map();
        N.id.forEach((node, slot) => byNode.set(node, slot));
      }
      return byNode.get(id);
    }

    const AXIS_ROWS = () => AXIS + NOTE_ROW + (costTotal > 0 ? COST_BAND : 0);
    let ROW = 18, BAR = 14;
    let view = { start: 0, end: 1, top: 0 };
    let width = 0, height = 0, dpr = 1;
    let hover = -1, selected = -1;
    let fullBars = [], narrowBars = [];

    function resize() {
      dpr = window.devicePixelRatio || 1;
      width = canvas.parentElement.clientWidth;
      const rect = canvas.getBoundingClientRect();
      const room = Math.max(240, window.innerHeight - rect.top - 70);
      const top = AXIS_ROWS();
      // rows shrink (down to 6px) so that the whole run fits before rows have to scroll
      const fit = Math.floor((room - top - 8) / Math.max(1, rows.length));
      ROW = Math.max(6, Math.min(18, fit));
      BAR = Math.max(4, ROW - 4);
      height = Math.min(top + rows.length * ROW + 8, room);
      height = Math.max(height, top + ROW + 8);
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
      canvas.style.height = height + "px";
      clampTop();
    }

    const span = () => Math.max(run.span, 1);
    const plotWidth = () => Math.max(1, width - GUTTER - 8);
    const scale = () => plotWidth() / Math.max(1, view.end - view.start);
    const xOf = (us) => GUTTER + (us - view.start) * scale();
    const usOf = (x) => view.start + (x - GUTTER) / scale();
    const visibleRows = () => Math.max(1, Math.floor((height - AXIS_ROWS()) / ROW));
    const rowY = (row) => AXIS_ROWS() + (row - view.top) * ROW;
    function clampTop() {
      view.top = Math.max(0, Math.min(view.top, rows.length - visibleRows()));
    }

    function firstEndingAfter(bars, us) {
      let lo = 0, hi = bars.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (endOf(bars[mid]) < us) lo = mid + 1; else hi = mid;
      }
      return lo;
    }

    // One frame: axis, cost curve, rows, then each row's bars in view: a bar at least
    // MIN_BAR pixels wide is drawn whole (failed ones last, so they stay visible), narrower
    // ones are counted per pixel column and the column drawn with each status's share of
    // its height; then dependency edges, notes, and the hovered/selected outlines.
    function draw(check) {
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, width, height);
      ctx.font = "11px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      const top = AXIS_ROWS(), visible = visibleRows();
      const first = Math.floor(view.top), last = Math.min(rows.length, first + visible + 1);
      for (let r = first; r < last; r++) {
        const y = rowY(r), row = rows[r];
        if (r % 2) { ctx.fillStyle = "#f6f8fb"; ctx.fillRect(0, y, width, ROW); }
        if (ROW >= 12 || r % 5 === 4) {
          const indent = 6 + row.depth * 8;
          let x = indent;
          if (row.parents.length && ROW >= 10) {
            ctx.fillStyle = "#1d2330";
            triangle(x, y + ROW / 2, !row.parents.every((s) => collapsed.has(s)));
            x += TRI;
          }
          ctx.fillStyle = "#5f6b7a";
          ctx.fillText(row.label, x, y + ROW / 2, GUTTER - x - 4);
        }
      }
      const step = niceStep(1 / scale());
      ctx.strokeStyle = "#e3e7ee";
      ctx.fillStyle = "#5f6b7a";
      for (let t = Math.ceil(view.start / step) * step; t <= view.end; t += step) {
        const x = Math.round(xOf(t)) + 0.5;
        ctx.beginPath(); ctx.moveTo(x, AXIS - 6); ctx.lineTo(x, height); ctx.stroke();
        const label = fmt(t);
        if (x + 3 + ctx.measureText(label).width < width) ctx.fillText(label, x + 3, AXIS / 2);
      }
      const cost = drawCost();
      ctx.save();
      ctx.beginPath(); ctx.rect(GUTTER, top, width - GUTTER, height - top); ctx.clip();
      const pw = Math.ceil(plotWidth()) + 8;
      const counts = new Int32Array(4 * pw);
      const failedIds = [];
      let drawn = 0, failedDrawn = 0, aggregated = 0;
      const deferred = [];
      fullBars = []; narrowBars = [];
      // the hot loop: every bar in view of every row in view, so xOf and endOf are inlined
      const per = scale(), from = view.start, to = view.end, runEnd = run.span;
      const starts = A.start, ends = A.end, status = A.status;
      for (let r = first; r < last; r++) {
        const y = Math.round(rowY(r) + (ROW - BAR) / 2);
        const bars = rows[r].bars;
        let narrow = 0;
        for (let k = firstEndingAfter(bars, from); k < bars.length; k++) {
          const i = bars[k];
          const start = starts[i];
          if (start > to) break;
          drawn++;
          const code = status[i];
          if (code === FAILED) {
            failedDrawn++;
            if (failedIds.length < 1000) failedIds.push(N.id[A.slot[i]]);
          }
          const end = ends[i] === ends[i] ? ends[i] : Math.max(runEnd, start);
          const x0 = GUTTER + (start - from) * per, x1 = GUTTER + (end - from) * per;
          if (x1 - x0 >= MIN_BAR) {
            if (code === FAILED) deferred.push([i, y]); else paint(i, y);
            fullBars.push(i);
            continue;
          }
          const column = Math.floor((x0 + x1) / 2) - GUTTER;
          if (column < 0 || column >= pw) continue;
          counts[code * pw + column]++;
          if (check && narrowBars.length < CHECKED) narrowBars.push([i, GUTTER + column, y]);
          narrow++;
        }
        if (narrow) { aggregated += narrow; paintShares(counts, pw, y); counts.fill(0); }
      }
      for (const [i, y] of deferred) paint(i, y);
      const edges = edgesBox.checked ? drawEdges() : 0;
      ctx.restore();
      for (const note of notes) {
        const x = xOf(note[0]);
        if (x < GUTTER || x > width) continue;
        ctx.fillStyle = "#3b6fd8";
        ctx.beginPath(); ctx.moveTo(x, AXIS); ctx.lineTo(x - 4, AXIS + NOTE_ROW);
        ctx.lineTo(x + 4, AXIS + NOTE_ROW); ctx.fill();
      }
      ctx.save();
      ctx.beginPath(); ctx.rect(GUTTER - 3, top - 3, width - GUTTER + 3, height - top + 3); ctx.clip();
      outline(selected, "#1d2330", 2);
      outline(hover, "#1d2330", 1);
      ctx.restore();
      if (rows.length > visible) {
        const h = height - top, bar = Math.max(16, h * visible / rows.length);
        const y = top + (h - bar) * (view.top / Math.max(1, rows.length - visible));
        ctx.fillStyle = "rgba(29,35,48,0.25)";
        ctx.fillRect(width - 6, y, 4, bar);
      }
      return { drawn, failedDrawn, failedIds, aggregated, edges, cost };
    }

    // A pixel column of narrow bars: each status takes its share of the bar's height, in
    // whole pixels, the fraction left over carried to the next column, so that along a row
    // each status covers the share of the pixels it has of the bars.
    function paintShares(counts, pw, y) {
      const carry = [0, 0, 0, 0];
      const runs = [null, null, null, null];
      const flush = (s) => {
        const r = runs[s];
        if (r) { ctx.fillStyle = colours[s]; ctx.fillRect(GUTTER + r[0], y + r[2], r[1] - r[0], r[3]); }
        runs[s] = null;
      };
      for (let c = 0; c < pw; c++) {
        const total = counts[c] + counts[pw + c] + counts[2 * pw + c] + counts[3 * pw + c];
        if (!total) { for (let s = 0; s < 4; s++) flush(s); continue; }
        let used = 0;
        const heights = [0, 0, 0, 0];
        for (const s of [FAILED, SKIPPED, RUNNING]) {
          const want = BAR * counts[s * pw + c] / total + carry[s];
          const h = Math.min(Math.floor(want), BAR - used);
          carry[s] = want - h;
          heights[s] = h;
          used += h;
        }
        heights[0] = BAR - used;
        let offset = 0;
        for (const s of [0, SKIPPED, RUNNING, FAILED]) {
          const h = heights[s];
          const r = runs[s];
          if (h && r && r[1] === c && r[2] === offset && r[3] === h) r[1] = c + 1;
          else { flush(s); if (h) runs[s] = [c, c + 1, offset, h]; }
          offset += h;
        }
      }
      for (let s = 0; s < 4; s++) flush(s);
    }

    function triangle(x, y, open) {
      ctx.beginPath();
      if (open) { ctx.moveTo(x, y - 3); ctx.lineTo(x + 8, y - 3); ctx.lineTo(x + 4, y + 3); }
      else { ctx.moveTo(x + 1, y - 4); ctx.lineTo(x + 7, y); ctx.lineTo(x + 1, y + 4); }
      ctx.fill();
    }

    function barRect(i) {
      const x0 = Math.round(xOf(A.start[i]));
      const x1 = Math.round(xOf(endOf(i)));
      const y = Math.round(rowY(rowOf[i]) + (ROW - BAR) / 2);
      return [x0, y, Math.max(1, x1 - x0), BAR];
    }

    function paint(i, y) {
      const [x, , w] = barRect(i);
      ctx.fillStyle = colours[A.status[i]];
      // a one-pixel gap at the end keeps back-to-back bars of a row apart
      ctx.fillRect(x, y, w > 3 ? w - 1 : w, BAR);
      const left = Math.max(x, GUTTER);  // keep the label of a bar cut by the edge in view
      let textAt = left + 4;
      const s = A.slot[i];
      if (hasKids[s] && w >= TRI + 2 && BAR >= 8 && x >= GUTTER) {
        ctx.fillStyle = "#ffffff";
        triangle(x + 2, y + BAR / 2, !collapsed.has(s));
        textAt = x + TRI + 2;
      }
      if (x + w - textAt > 60 && BAR >= 10) {
        ctx.fillStyle = "#ffffff";
        ctx.save();
        ctx.beginPath(); ctx.rect(textAt, y, x + w - textAt - 2, BAR); ctx.clip();
        ctx.fillText(N.id[s] + (hidden[s] && collapsed.has(s) ? "  (+" + hidden[s] + ")" : ""),
          textAt, y + BAR / 2 + 1);
        ctx.restore();
      }
    }

    // An edge from the end of each upstream node's last attempt to the start of each bar
    // drawn whole whose node depends on it.
    function drawEdges() {
      let count = 0;
      ctx.strokeStyle = EDGE_INK;
      ctx.fillStyle = EDGE_INK;
      ctx.lineWidth = 1.25;
      for (const i of fullBars) {
        const deps = N.depends[A.slot[i]] || null;
        if (!deps) continue;
        for (const d of deps) {
          const j = d >= 0 && d < lastOf.length ? lastOf[d] : -1;
          if (j < 0 || rowOf[j] < 0 || count >= EDGE_LIMIT) continue;
          const x0 = xOf(endOf(j)), y0 = rowY(rowOf[j]) + ROW / 2;
          const x1 = xOf(A.start[i]), y1 = rowY(rowOf[i]) + ROW / 2;
          const bend = Math.max(12, Math.abs(x1 - x0) / 2);
          ctx.beginPath(); ctx.moveTo(x0, y0);
          ctx.bezierCurveTo(x0 + bend, y0, x1 - bend, y1, x1 - 4, y1);
          ctx.stroke();
          ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x1 - 6, y1 - 3.5);
          ctx.lineTo(x1 - 6, y1 + 3.5); ctx.fill();
          count++;
        }
      }
      ctx.lineWidth = 1;
      return count;
    }

    // The cumulative cost along the time axis: what each attempt cost (its own cost and its
    // model calls' usage cost) at its end. Summed at layout into COST_BINS bins of the run's
    // span (a bin is a millionth of it), so a frame reads the sums, not the attempts.
    function costBins() {
      bins = new Float64Array(COST_BINS + 1);
      const per = COST_BINS / Math.max(1, run.span);
      for (let i = 0; i < A.slot.length; i++) {
        const amount = spent(i);
        if (amount > 0) bins[Math.min(COST_BINS, Math.max(0, Math.floor(endOf(i) * per)))] += amount;
      }
      for (let b = 1; b <= COST_BINS; b++) bins[b] += bins[b - 1];
    }

    function costBy(us) {
      const b = Math.floor(us * COST_BINS / Math.max(1, run.span));
      return b < 0 ? 0 : bins[Math.min(COST_BINS, b)];
    }

    function drawCost() {
      if (!(costTotal > 0)) return 0;
      const y0 = AXIS + NOTE_ROW + 4, h = COST_BAND - 8, bottom = y0 + h;
      ctx.fillStyle = "#5f6b7a";
      ctx.fillText("cost", 6, y0 + h / 2 - 5);
      ctx.fillText("$" + costTotal.toFixed(4), 6, y0 + h / 2 + 7, GUTTER - 10);
      const columns = Math.max(1, Math.ceil(width - GUTTER)) + 1;
      ctx.save();
      ctx.beginPath(); ctx.rect(GUTTER, y0 - 2, width - GUTTER, h + 4); ctx.clip();
      ctx.beginPath();
      ctx.moveTo(GUTTER, bottom - (costBy(usOf(GUTTER)) / costTotal) * h);
      for (let c = 1; c < columns; c++) {
        ctx.lineTo(GUTTER + c, bottom - (costBy(usOf(GUTTER + c)) / costTotal) * h);
      }
      ctx.strokeStyle = COST_INK;
      ctx.lineWidth = 1.5;
      ctx.stroke();
      ctx.lineTo(GUTTER + columns, bottom); ctx.lineTo(GUTTER, bottom); ctx.closePath();
      ctx.fillStyle = "rgba(123,79,214,0.12)";
      ctx.fill();
      ctx.restore();
      ctx.lineWidth = 1;
      return columns;
    }

    function outline(i, colour, lineWidth) {
      if (i < 0 || rowOf[i] < 0) return;
      const [x, y, w, h] = barRect(i);
      if (y + h < AXIS_ROWS() || y > height) return;
      ctx.strokeStyle = colour; ctx.lineWidth = lineWidth;
      ctx.strokeRect(x - 1.5, y - 1.5, w + 3, h + 3);
      ctx.lineWidth = 1;
    }

    // Reads the canvas back: a bar drawn whole counts as shown when the pixel at its middle,
    // one pixel below its top edge (clear of its label), has its status colour; and the
    // pixels of each status colour in the rows are counted.
    function verify() {
      const image = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      const rgb = colours.map((c) => {
        ctx.fillStyle = c;
        const hex = ctx.fillStyle;
        return [1, 3, 5].map((o) => parseInt(hex.slice(o, o + 2), 16));
      });
      let shown = 0, failedShown = 0;
      const missing = [];
      for (const i of fullBars) {
        const [x, y, w] = barRect(i);
        const px = Math.floor((x + w / 2) * dpr), py = Math.floor((y + 1) * dpr);
        if (px < 0 || py < 0 || px >= canvas.width || py >= canvas.height) continue;
        const at = (py * canvas.width + px) * 4;
        const want = rgb[A.status[i]];
        if (image[at] === want[0] && image[at + 1] === want[1] && image[at + 2] === want[2]) {
          shown++;
          if (A.status[i] === FAILED) failedShown++;
        } else if (missing.length < 20) {
          missing.push(N.id[A.slot[i]]);
        }
      }
      // a narrow bar is shown when its status colour is in its pixel column, on its row
      for (const [i, x, top] of narrowBars) {
        const want = rgb[A.status[i]];
        const px = Math.floor(x * dpr);
        let found = false;
        for (let y = Math.floor(top * dpr); y < Math.floor((top + BAR) * dpr) && !found; y++) {
          const at = (y * canvas.width + px) * 4;
          found = image[at] === want[0] && image[at + 1] === want[1] && image[at + 2] === want[2];
        }
        if (found) { shown++; if (A.status[i] === FAILED) failedShown++; }
        else if (missing.length < 20) missing.push(N.id[A.slot[i]]);
      }
      const pixels = [0, 0, 0, 0];
      const key = rgb.map(([r, g, b]) => (r << 16) | (g << 8) | b);
      const x0 = Math.ceil(GUTTER * dpr), y0 = Math.ceil(AXIS_ROWS() * dpr);
      for (let y = y0; y < canvas.height; y++) {
        for (let x = x0, at = (y * canvas.width + x) * 4; x < canvas.width; x++, at += 4) {
          const k = key.indexOf((image[at] << 16) | (image[at + 1] << 8) | image[at + 2]);
          if (k >= 0 && image[at + 3] === 255) pixels[k]++;
        }
      }
      let inked = 0;
      if (costTotal > 0) {
        const top = Math.floor((AXIS + NOTE_ROW) * dpr), bottom = Math.floor((AXIS + NOTE_ROW + COST_BAND) * dpr);
        for (let y = top; y < bottom; y++) {
          for (let x = x0, at = (y * canvas.width + x) * 4; x < canvas.width; x++, at += 4) {
            const r = image[at], g = image[at + 1], b = image[at + 2];
            if (image[at + 3] > 128 && b > r && b > g + 40) inked++;
          }
        }
      }
      return { shown, failedShown, missing, pixels, inked };
    }

    function describe(i) {
      const s = A.slot[i];
      const index = N.index[s];
      const lines = [N.id[s] + (index !== null && index !== undefined ? "  (index " + index + ")" : "")];
      const status = run.statuses[A.status[i]];
      lines.push("status    " + (status === "running" ? "unfinished" : status) +
        (tries[s] > 1 ? "  (attempt " + A.attempt[i] + " of " + tries[s] + ")" : ""));
      lines.push("start     +" + fmt(A.start[i]) + "   end +" + fmt(endOf(i)));
      const duration = text("duration", i), hash = text("hash", i), message = text("message", i);
      const output = text("output", i);
      const inTok = A.input_tokens[i] || 0, outTok = A.output_tokens[i] || 0;
      const usage = A.usage_cost[i] || 0;
      if (duration !== null) lines.push("duration  " + fmt(duration));
      if (A.cost[i]) lines.push("cost      $" + A.cost[i].toFixed(6));
      if (inTok || outTok || usage) {
        lines.push("tokens    " + inTok + " in / " + outTok + " out" +
          (usage ? "   usage cost $" + usage.toFixed(6) : ""));
      }
      if (parentOf(s) >= 0) lines.push("parent    " + N.id[parentOf(s)]);
      if (hasKids[s]) {
        lines.push("children  " + (collapsed.has(s) ? "collapsed (" + hidden[s] + " attempts)" : "shown"));
      }
      if (N.depends[s]) lines.push("depends   " + N.depends[s].map((d) => N.id[d]).join(", "));
      if (hash !== null) lines.push("hash      " + hash);
      if (message !== null) {
        lines.push((A.status[i] === SKIPPED ? "reason    " : "error     ") + message);
      }
      if (output !== null) lines.push("output    " + output);
      if (A.output.length < A.slot.length) lines.push("(the outputs and errors are still being read)");
      return lines.join("\n");
    }

    function rowAt(y) {
      const row = Math.floor((y - AXIS_ROWS()) / ROW + view.top);
      return y < AXIS_ROWS() || row < 0 || row >= rows.length ? -1 : row;
    }

    function hit(x, y) {
      const row = rowAt(y);
      if (x < GUTTER || row < 0) return -1;
      const bars = rows[row].bars;
      const slack = 3 / scale();
      const t = usOf(x);
      let best = -1, bestGap = Infinity;
      for (let k = firstEndingAfter(bars, t - slack); k < bars.length; k++) {
        const i = bars[k];
        if (A.start[i] > t + slack) break;
        const gap = t < A.start[i] ? A.start[i] - t : t > endOf(i) ? t - endOf(i) : 0;
        if (gap < bestGap || (gap === bestGap && A.status[i] === FAILED)) { best = i; bestGap = gap; }
      }
      return best;
    }

    function noteAt(x, y) {
      if (y < AXIS - 2 || y > AXIS + NOTE_ROW + 2) return null;
      for (const note of notes) if (Math.abs(xOf(note[0]) - x) <= 4) return note;
      return null;
    }

    // Draws a frame now and writes into #drawn what it drew (``check``: read the canvas
    // back too).
    let frames = 0, drawn = {};
    function render(check) {
      const began = performance.now();
      const result = draw(check);
      frames++;
      drawn = {
        bars: A.slot.length, lanes, rows: rows.length, span: run.span, drawn: result.drawn,
        full: fullBars.length, aggregated: result.aggregated, failedDrawn: result.failedDrawn,
        failedNodes: result.failedIds.join(" "), edges: result.edges,
        collapsed: [...collapsed].map((s) => N.id[s]).join(" "),
        costTotal: costTotal.toFixed(6), costColumns: result.cost, frames,
        frameMs: (performance.now() - began).toFixed(1),
      };
      // the first frame's time counts from the page's start: reading, decoding, layout
      if (frames === 1) drawn.renderMs = performance.now().toFixed(1);
      if (check) {
        const seen = verify();
        const coloured = seen.pixels.reduce((x, y) => x + y, 0);
        const failedAttempts = A.status.filter((s) => s === FAILED).length;
        Object.assign(drawn, {
          shown: seen.shown, failedShown: seen.failedShown, notShown: seen.missing.join(" "),
          pixels: seen.pixels.join(" "), costInked: seen.inked,
          failedShare: coloured ? (seen.pixels[FAILED] / coloured).toFixed(4) : "0",
          runFailedShare: A.slot.length ? (failedAttempts / A.slot.length).toFixed(4) : "0",
        });
        const firstFailed = fullBars.find((i) => A.status[i] === FAILED);
        if (firstFailed !== undefined) drawn.firstFailedRect = barRect(firstFailed).join(",");
        if (A.slot.length <= RECORD_ROWS) {
          drawn.layout = A.slot.map((s, i) => N.id[s] + "@" + (rowOf[i] < 0 ? "hidden" :
            rowOf[i] + ":" + rows[rowOf[i]].depth)).join(" ");
        }
      }
      for (const [key, value] of Object.entries(drawn)) out.dataset[key] = String(value);
      out.value = result.drawn + " of " + A.slot.length + " bars drawn";
      return drawn;
    }

    // One frame per animation frame, however many asks; checked if any ask was, so that a
    // frame after a resize does not leave #drawn with the read-back of an older layout.
    let frame = 0, checkNext = false;
    function redraw(check) {
      checkNext = checkNext || check === true;
      if (!frame) {
        frame = requestAnimationFrame(() => {
          const checked = checkNext;
          frame = 0; checkNext = false;
          render(checked);
        });
      }
    }

    function relayout(check) {
      layout();
      resize();
      render(check);
    }

    function zoomAround(x, factor) {
      const pivot = usOf(Math.max(GUTTER, x));
      let length = Math.max(10, (view.end - view.start) * factor);
      length = Math.min(length, span() * 1.05);
      const ratio = (pivot - view.start) / Math.max(1, view.end - view.start);
      view.start = pivot - ratio * length;
      view.end = view.start + length;
      redraw();
    }

    function setCollapsed(slot, fold) {
      if (fold) collapsed.add(slot); else collapsed.delete(slot);
    }

    function focus(i) {
      for (let s = parentOf(A.slot[i]), hops = 0; s >= 0 && hops < N.id.length; s = parentOf(s), hops++) {
        if (collapsed.has(s)) { collapsed.delete(s); layout(); resize(); }
      }
      selected = i;
      const length = Math.max(endOf(i) - A.start[i], span() / 200) * 6;
      const middle = (A.start[i] + endOf(i)) / 2;
      view.start = middle - length / 2;
      view.end = middle + length / 2;
      view.top = rowOf[i] - Math.floor(visibleRows() / 2);
      clampTop();
      panel.textContent = describe(i);
      redraw();
    }

    function focusNode(id) {
      let slot = slotOf(id);
      if (slot === undefined) slot = N.id.findIndex((node) => node.includes(id));
      if (slot === undefined || slot < 0 || lastOf[slot] < 0) return false;
      focus(lastOf[slot]);
      return true;
    }

    function click(x, y) {
      const row = rowAt(y);
      if (x < GUTTER) {
        if (row < 0 || !rows[row].parents.length) return;
        const fold = !rows[row].parents.every((s) => collapsed.has(s));
        for (const s of rows[row].parents) setCollapsed(s, fold);
        relayout(true);
        return;
      }
      const i = hit(x, y);
      if (i < 0) return;
      const s = A.slot[i];
      if (hasKids[s] && x - barRect(i)[0] <= TRI + 2) {
        setCollapsed(s, !collapsed.has(s));
        relayout(true);
        return;
      }
      selected = i;
      panel.textContent = describe(i);
      redraw();
    }

    canvas.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const rect = canvas.getBoundingClientRect();
      if (ev.shiftKey) {
        view.top += Math.sign(ev.deltaY || ev.deltaX) * 3;
        clampTop();
        redraw();
        return;
      }
      zoomAround(ev.clientX - rect.left, Math.exp(ev.deltaY * 0.002));
    }, { passive: false });

    let drag = null;
    canvas.addEventListener("mousedown", (ev) => {
      drag = { x: ev.clientX, y: ev.clientY, start: view.start, end: view.end, top: view.top,
               moved: false };
    });
    window.addEventListener("mouseup", (ev) => {
      if (drag && !drag.moved) {
        const rect = canvas.getBoundingClientRect();
        click(ev.clientX - rect.left, ev.clientY - rect.top);
      }
      drag = null;
    });
    canvas.addEventListener("mousemove", (ev) => {
      const rect = canvas.getBoundingClientRect();
      const x = ev.clientX - rect.left, y = ev.clientY - rect.top;
      if (drag) {
        const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
        if (drag.moved) {
          const shift = dx / scale();
          view.start = drag.start - shift; view.end = drag.end - shift;
          view.top = drag.top - dy / ROW; clampTop();
          tip.style.display = "none";
          redraw();
          return;
        }
      }
      const note = noteAt(x, y);
      const i = note ? -1 : hit(x, y);
      if (i !== hover) { hover = i; redraw(); }
      const text = note ? "note +" + fmt(note[0]) + (note[2] ? " (" + note[2] + ")" : "") +
        "\n" + note[1] : i >= 0 ? describe(i) : "";
      if (!text) { tip.style.display = "none"; return; }
      tip.textContent = text;
      tip.style.display = "block";
      const left = Math.min(x + 14, width - tip.offsetWidth - 4);
      tip.style.left = Math.max(0, left) + "px";
      tip.style.top = (y + 16) + "px";
    });
    canvas.addEventListener("mouseleave", () => {
      tip.style.display = "none";
      if (hover !== -1) { hover = -1; redraw(); }
    });
    part("reset").addEventListener("click", () => {
      view = { start: 0, end: span(), top: 0 };
      redraw();
    });
    edgesBox.addEventListener("change", () => render(true));
    part("find").addEventListener("keydown", (ev) => {
      if (ev.key !== "Enter") return;
      const wanted = ev.target.value.trim();
      if (wanted && !focusNode(wanted)) {
        panel.textContent = "No node matches " + JSON.stringify(wanted) + ".";
      }
    });
    window.addEventListener("resize", () => { resize(); redraw(true); });

    add(data);
    // "#collapse=a,b" in the address: those nodes start collapsed
    const wanted = /(?:^#|&)collapse=([^&]*)/.exec(location.hash);
    if (wanted) {
      for (const id of wanted[1].split(",")) {
        const slot = slotOf(decodeURIComponent(id));
        if (slot !== undefined) collapsed.add(slot);
      }
    }
    layout();
    view = { start: 0, end: span(), top: 0 };
    resize();
    render(true);

    return {
      append(delta) {
        const atEnd = view.end >= span();
        add(delta);
        layout();
        if (atEnd) view.end = Math.max(view.end, span());
        resize();
        return render(true);
      },
      collapse(id, fold) {
        const slot = slotOf(id);
        if (slot === undefined) return false;
        setCollapsed(slot, fold !== false);
        relayout(true);
        return true;
      },
      focus: focusNode,
      // the canvas rectangle [x, y, width, height] of a node's last attempt, or null
      rectOf(id) {
        const slot = slotOf(id);
        const i = slot === undefined ? -1 : lastOf[slot];
        return i < 0 || rowOf[i] < 0 ? null : barRect(i);
      },
      describe(id) {
        const slot = slotOf(id);
        return slot === undefined || lastOf[slot] < 0 ? null : describe(lastOf[slot]);
      },
      details(columns) { setDetails(columns); if (selected >= 0) panel.textContent = describe(selected); },
      render: () => render(true),
      // show microseconds start..end of the run and draw that frame now
      zoom(start, end) {
        view.start = start; view.end = Math.max(start + 10, end);
        return render(false);
      },
      get drawn() { return drawn; },
    };
  }

  // The page's data: JSON, or the base64 of its deflate-raw compression.
  function read(script) {
    const text = script.textContent;
    if (script.type === "application/json") return JSON.parse(text);
    const binary = atob(text), bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
    return new Response(stream).text().then(JSON.parse);
  }

  return { mount, read };
})();
