"""The timeline page: one self-contained HTML file, a canvas Gantt chart of the node attempts.

The page loads nothing: its style, script and data are inline, and a Content-Security-Policy
forbids every fetch. Its script is a renderer of a *timeline data object*, which this module
makes from a run's attempt table (``timeline_data``, or a ``TimelineFeed`` for a run that
grows); the page's own script mounts it on load, and other pages (the live watch page) mount
it (``renderer_script()`` is its JavaScript) and hand it more data later::

    const handle = window.tracebusTimeline.mount(element, data);  // draws the first frame
    handle.append(delta);        // new attempts, or newer states of attempts drawn
    handle.collapse(nodeId, true);   // or false: a parent's children hidden, or shown
    handle.focus(nodeId);        // zoom to the node's last attempt and show its details
    handle.zoom(startUs, endUs); // show that span of the run, drawn now
    handle.rectOf(nodeId);       // [x, y, w, h] of its last attempt on the canvas, or null
    handle.describe(nodeId);     // the text its details show
    handle.drawn;                // what the last frame drew (also written into #drawn)

``window.tracebusTimeline.read(scriptElement)`` gives the data of a ``<script>`` element
holding it as this page does (the object, or a promise of it when compressed).

The data object (``format`` 1; stable: fields may be added, none will change meaning)::

    {"format": 1,
     "run": {"workflow_id", "run_id", "status", "started": ISO time or null,
             "origin": epoch seconds every offset counts from (the run's start),
             "span": microseconds from origin to the run's end, "statuses": [...],
             "counts": the run's NodeCounts},
     "nodes": {"first": slot of the first node here, "id": [str], "index": Δ [int | null],
               "parent": [slot | -1], "depends": [[slot, ...] | null]},
     "attempts": {"count": n, "slot": Δ, "start": Δ µs,
                  "length": [µs, or -1 while running], "status": [index into statuses],
                  "attempt": [1, 2, ...], "duration": [reported µs | null],
                  "cost": [USD, 0 for none], "hash": [str | null],
                  "output": [str | null], "message": [the error, or skip reason | null],
                  "input_tokens": [int], "output_tokens": [int],
                  "usage_cost": [USD of the node's model calls while it ran]},
     "notes": [[µs, message, node_id | null], ...]}

Nodes are numbered by *slot*, their order of first appearance in the trace; ``nodes`` holds
slots ``first``, ``first + 1``... A node's ``parent`` and ``depends`` name slots; a node
column other than ``id`` may be absent, meaning none for every node. Each attempt is a row
of the ``attempts`` columns; the three of usage are absent from a run without ``usage``
events (a delta's row without a column takes none). The columns marked Δ (``index``,
``slot``, ``start`` in µs from origin) are delta-coded: each value is the difference from
the one before it that is not null, the first from 0. Texts are inline, the output summary
cut to 400 characters. A full object holds every attempt, sorted by start;
a delta (``TimelineFeed.data(..., rows)``) the nodes and notes new since the feed's last
object and the attempts asked for: one whose (slot, attempt) the page has replaces it (a
running attempt that has ended), and rows need not be in start order.

In the page the object is inline as JSON, or for a large run as the base64 of its
deflate-raw compression (decoded by ``DecompressionStream``). The page lays the attempts
out itself: children under their parent, concurrent siblings on separate lanes (the lowest
free one when an attempt starts, as the Chrome export does), a parent's children
collapsible; zoomed out, bars narrower than two pixels are drawn as per-pixel shares.
"""

from __future__ import annotations

import base64
import html
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from importlib import resources
from itertools import islice
from typing import Any, TextIO

import msgspec

from .._text import one_line
from ._attempts import STATUS_CODES, AttemptTable, Lanes, lay_out
from ._scan import RunFacts
from ._summary import format_seconds, render_summary

FORMAT = 1
#: Attempts up to which the page carries its data as JSON; above, compressed.
INLINE_ATTEMPTS = 20_000
_SHOWN_FAILURES = 50
_SHORT_TEXT = 400
_CHUNK = 8192
_PLACEHOLDER = re.compile(r"__(TITLE|HEADER|KIND|DATA|DETAILS|RENDERER)__")
#: The attempt columns the page carries in its second part, read after the first frame.
DETAIL_COLUMNS = ("duration", "hash", "output", "message")
_RUNNING = STATUS_CODES.index("running")


class TimelineFeed:
    """Makes the timeline data object of a run, then deltas of it as the run grows: each
    object after the first carries only the nodes and notes the earlier ones did not."""

    def __init__(self) -> None:
        self._nodes = 0
        self._notes = 0

    def data(
        self, facts: RunFacts, table: AttemptTable, rows: Sequence[int] | None = None
    ) -> dict[str, Any]:
        """The data object of the attempts ``rows`` of ``table`` (indices into it), or of
        every attempt, in start order, when None."""
        data = dict(self._parts(facts, table, lay_out(facts, table), rows))
        for name in ("nodes", "attempts"):
            data[name] = {
                key: column if isinstance(column, int) else list(column)
                for key, column in data[name].items()
            }
        return data

    def _parts(
        self, facts: RunFacts, table: AttemptTable, lanes: Lanes, rows: Sequence[int] | None
    ) -> Iterator[tuple[str, Any]]:
        """The object's parts in order; the columns of nodes and attempts as iterables,
        made as they are read."""
        if rows is None:
            order: Sequence[int] = lanes.order
            starts: Sequence[int] = lanes.start_us
            ends: Sequence[int] = lanes.end_us
        else:
            order = rows
            where = {index: at for at, index in enumerate(lanes.order)}
            starts = [lanes.start_us[where[i]] for i in rows]
            ends = [lanes.end_us[where[i]] for i in rows]
        yield "format", FORMAT
        run = {
            "workflow_id": facts.workflow_id,
            "run_id": facts.run_id,
            "status": facts.status,
            "started": _iso(facts.started),
            "origin": lanes.origin,
            "span": lanes.span_us,
            "statuses": STATUS_CODES,
            "counts": facts.counts._asdict(),
        }
        yield "run", run
        first_node, self._nodes = self._nodes, len(facts.node_ids)
        yield "nodes", {"first": first_node, **_node_columns(facts, first_node)}
        columns = _attempt_columns(table, order, starts, ends, bool(facts.usage_by_model))
        yield "attempts", {"count": len(order), **columns}
        first_note, self._notes = self._notes, len(table.notes)
        notes = [
            [lanes.offset_us(note.epoch_seconds), str(note.message or ""), note.node_id]
            for note in table.notes[first_note:]
            if note.epoch_seconds is not None
        ]
        yield "notes", notes


def _node_columns(facts: RunFacts, first: int) -> dict[str, Any]:
    """The nodes' columns from slot ``first``; those no node has a value in left out."""
    slots = range(first, len(facts.node_ids))
    columns: dict[str, Any] = {
        "id": islice(facts.node_ids, first, None),
        "index": _delta(map(facts.node_index, slots)),
    }
    if facts.children:
        columns["parent"] = islice(facts.parents, first, None)
    if facts.depends:
        depends = facts.depends
        columns["depends"] = (
            (facts.upstream_slots(slot) or None) if slot in depends else None for slot in slots
        )
    return columns


def _attempt_columns(
    table: AttemptTable,
    order: Sequence[int],
    starts: Sequence[int],
    ends: Sequence[int],
    usage: bool,
) -> dict[str, Iterable[Any]]:
    """The attempts' columns; the tokens and usage cost only when the run has ``usage``."""
    status, errors, reasons = table.status, table.errors, table.reasons
    columns: dict[str, Iterable[Any]] = {
        "slot": _delta(table.slot[i] for i in order),
        "start": _delta(starts),
        "length": (
            -1 if status[i] == _RUNNING else end - start
            for i, start, end in zip(order, starts, ends, strict=True)
        ),
        "status": (status[i] for i in order),
        "attempt": (table.number[i] for i in order),
        "duration": (round(d * 1e6) if (d := table.duration[i]) == d else None for i in order),
        "cost": (table.cost[i] for i in order),
        "hash": (table.hashes[i] for i in order),
        "output": (_output_text(table.summary[i]) for i in order),
        "message": (errors.get(i) or reasons.get(i) for i in order),
    }
    if usage:
        columns["input_tokens"] = (table.input_tokens[i] for i in order)
        columns["output_tokens"] = (table.output_tokens[i] for i in order)
        columns["usage_cost"] = (table.usage_cost[i] for i in order)
    return columns


def renderer_script() -> str:
    """The renderer (``window.tracebusTimeline``), JavaScript to inline in a ``<script>``
    element of any page; it holds no ``</script``."""
    return resources.files(__package__).joinpath("timeline.js").read_text("utf-8")


def timeline_data(facts: RunFacts, table: AttemptTable) -> dict[str, Any]:
    """The timeline data object of the whole run (see the module's docstring)."""
    return TimelineFeed().data(facts, table)


def write_timeline(
    facts: RunFacts, table: AttemptTable, output: TextIO, *, compress: bool | None = None
) -> None:
    """Write the timeline page of the run to ``output``; its data compressed when
    ``compress``, or by default when the run has more than ``INLINE_ATTEMPTS`` attempts."""
    if compress is None:
        compress = len(table) > INLINE_ATTEMPTS
    lanes = lay_out(facts, table)
    summary = table.figures.summary(facts, facts.node_ids, facts.node_status, lanes.count)
    template = resources.files(__package__).joinpath("timeline.html").read_text("utf-8")
    kind = "application/x-deflate-raw-base64" if compress else "application/json"
    parts: dict[str, Callable[[], object]] = {
        "TITLE": lambda: output.write(html.escape(f"{facts.workflow_id or 'run'} timeline")),
        "HEADER": lambda: output.write(_header(facts, summary)),
        "KIND": lambda: output.write(kind),
        "DATA": lambda: _write_data(facts, table, lanes, output, compress),
        "DETAILS": lambda: _write_details(facts, table, lanes, output, compress),
        "RENDERER": lambda: output.write(renderer_script()),
    }
    at = 0
    for match in _PLACEHOLDER.finditer(template):
        output.write(template[at : match.start()])
        parts[match.group(1)]()
        at = match.end()
    output.write(template[at:])


def _write_data(
    facts: RunFacts, table: AttemptTable, lanes: Lanes, output: TextIO, compress: bool
) -> None:
    """The data object but its attempts' DETAIL_COLUMNS."""
    sink = _sink(output, compress)
    sink.write("{")
    # the columns are written as they are made, a chunk at a time: none is held whole
    for number, (name, part) in enumerate(TimelineFeed()._parts(facts, table, lanes, None)):
        sink.write(("," if number else "") + _json(name) + ":")
        if name == "attempts":
            part = {key: column for key, column in part.items() if key not in DETAIL_COLUMNS}
        if name in ("nodes", "attempts"):
            _write_columns(sink, part)
        else:
            sink.write(_json(part))
    sink.write("}")
    sink.close()


def _write_details(
    facts: RunFacts, table: AttemptTable, lanes: Lanes, output: TextIO, compress: bool
) -> None:
    """The attempts' DETAIL_COLUMNS, in the order of the data's attempts."""
    sink = _sink(output, compress)
    for name, part in TimelineFeed()._parts(facts, table, lanes, None):
        if name == "attempts":
            _write_columns(sink, {key: part[key] for key in DETAIL_COLUMNS})
    sink.close()


def _write_columns(sink: _Escaped | _Deflated, columns: dict[str, Any]) -> None:
    for at, (key, column) in enumerate(columns.items()):
        sink.write(("{" if at == 0 else ",") + _json(key) + ":")
        if isinstance(column, int):
            sink.write(str(column))
            continue
        sink.write("[")
        values = iter(column)
        gap = ""
        while chunk := list(islice(values, _CHUNK)):
            sink.write(gap + _json(chunk)[1:-1])
            gap = ","
        sink.write("]")
    sink.write("}")


def _sink(output: TextIO, compress: bool) -> _Escaped | _Deflated:
    return _Deflated(output) if compress else _Escaped(output)


class _Escaped:
    """JSON text inside ``<script>``: no ``<`` may start a closing tag."""

    def __init__(self, output: TextIO) -> None:
        self._output = output

    def write(self, text: str) -> None:
        self._output.write(text.replace("<", "\\u003c").replace(">", "\\u003e"))

    def close(self) -> None:
        pass


class _Deflated:
    """Text compressed (deflate-raw), written as base64 as it is made."""

    def __init__(self, output: TextIO) -> None:
        self._output = output
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._pending = b""

    def write(self, text: str) -> None:
        self._emit(self._deflate.compress(text.encode("utf-8")))

    def close(self) -> None:
        self._emit(self._deflate.flush())
        self._output.write(base64.b64encode(self._pending).decode("ascii"))
        self._pending = b""

    def _emit(self, data: bytes) -> None:
        data = self._pending + data
        whole = len(data) - len(data) % 3
        if whole:
            self._output.write(base64.b64encode(data[:whole]).decode("ascii"))
        self._pending = data[whole:]


def _delta(values: Iterable[int | None]) -> Iterator[int | None]:
    """Each value less the one before it (the first less 0); None stays None, skipped."""
    previous = 0
    for value in values:
        if value is None:
            yield None
        else:
            yield value - previous
            previous = value


def _output_text(raw: bytes) -> str | None:
    if raw == b"null":
        return None
    text = msgspec.json.decode(raw) if raw[:1] == b'"' else raw.decode("utf-8")
    if not isinstance(text, str):
        text = str(text)
    return text if len(text) <= _SHORT_TEXT else text[: _SHORT_TEXT - 3] + "..."


def _json(data: Any) -> str:
    # ensure_ascii keeps U+2028/9 and lone surrogates out of the script
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _header(run: RunFacts, summary: dict[str, Any]) -> str:
    e = html.escape
    s = summary
    state = run.status if run.ok or run.status != "complete" else "complete-with-failures"
    label = {"complete-with-failures": f"complete, {s['nodes_failed']} failed"}.get(state, state)
    parallelism = f"{s['parallelism']:.2f}x" if s["parallelism"] is not None else "-"
    figures = [
        (
            "nodes",
            f"{s['nodes_completed']} completed / {s['nodes_failed']} failed / "
            f"{s['nodes_skipped']} skipped / {s['nodes_unfinished']} unfinished "
            f"of {s['total_nodes']}",
        ),
        (
            "attempts",
            f"{s['attempts_failed']} failed / {s['retries']} retries / "
            f"{s['nodes_retried']} nodes retried",
        ),
        ("wall time", format_seconds(s["wall_seconds"])),
        ("node time", format_seconds(s["node_seconds"])),
        ("parallelism", parallelism),
        ("peak in flight", str(s["peak_in_flight"])),
        ("cost", "unknown" if s["cost_usd"] is None else f"${s['cost_usd']:.4f}"),
        ("started", _iso(run.started) or "-"),
        ("run", run.run_id or "-"),
    ]
    parts = [
        f"<h1>{e(run.workflow_id or '(unnamed workflow)')} "
        f'<span class="badge {e(state)}">{e(label)}</span></h1>',
        '<dl class="figures">',
        *(f"<div><dt>{e(k)}</dt><dd>{e(v)}</dd></div>" for k, v in figures),
        "</dl>",
    ]
    if run.error:
        parts.append(f'<p class="run-error">workflow error: {e(run.error)}</p>')
    failures = s["failures"]
    if failures:
        parts.append(f"<details open><summary>{len(failures)} failed node(s)</summary><ul>")
        for failure in failures[:_SHOWN_FAILURES]:
            parts.append(
                f'<li><a href="#" data-node="{e(failure["node_id"])}">{e(failure["node_id"])}</a>'
                f" {e(one_line(failure['error'] or '', 200))}</li>"
            )
        if len(failures) > _SHOWN_FAILURES:
            parts.append(f"<li>and {len(failures) - _SHOWN_FAILURES} more</li>")
        parts.append("</ul></details>")
    if run.warnings:
        parts.append('<ul class="warnings">')
        parts += [f"<li>{e(w)}</li>" for w in run.warnings]
        parts.append("</ul>")
    parts.append(f'<pre class="text-summary" hidden>{e(render_summary(s))}</pre>')
    return "\n".join(parts)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
