from __future__ import annotations

from datetime import UTC, datetime

from tracebus._factory import EventFactory
from tracebus._stamping import IsoClock
from tracebus._state import RunState


def test_per_node_details_are_capped_but_totals_are_not() -> None:
    events = EventFactory("wf", "r")
    state = RunState("wf", "r", 5, 0.0, max_node_details=3)
    starts = [events.node_start(f"n{i}", i) for i in range(5)]
    ends = [events.node_success(f"n{i}", 1.0, None, None, 0.25) for i in range(5)]
    state.apply([event for pair in zip(starts, ends, strict=True) for event in pair])
    assert list(state.node_times) == ["n0", "n1", "n2"]
    assert state.node_details_dropped == 2
    assert state.nodes_completed == 5
    assert state.cost_usd == 1.25
    assert [e.node_index for e in ends] == [0, 1, 2, 3, 4]
    assert state.in_flight == {}


def test_seq_is_stamped_in_arrival_order_unless_a_producer_set_it() -> None:
    events = EventFactory("wf", "r")
    state = RunState("wf", "r", 0, 0.0)
    local = [events.note("a", None, {}), events.note("b", None, {})]
    remote = events.note("c", None, {})
    remote.seq = 41
    state.apply([*local, remote])
    assert [e.seq for e in (*local, remote)] == [1, 2, 41]


def test_iso_clock_formats_utc_with_microseconds() -> None:
    iso = IsoClock()
    assert iso(0.25) == "1970-01-01T00:00:00.250000+00:00"
    assert iso(86_400.5) == "1970-01-02T00:00:00.500000+00:00"
    assert iso(86_400.000001) == "1970-01-02T00:00:00.000001+00:00"


def test_apply_stamps_timestamps_as_the_iso_clock_formats_them_across_seconds() -> None:
    events = EventFactory("wf", "r")
    state = RunState("wf", "r", 0, 0.0)
    epochs = [1_795_823_321.999_999_6, 1_795_823_322.0, 1_795_823_322.123_456, 86_400.5, 0.25]
    batch = [events.node_start(f"n{i}", i) for i in range(len(epochs))]
    for event, epoch in zip(batch, epochs, strict=True):
        event.epoch_seconds = epoch
    given = events.node_start("given", None)
    given.timestamp = "kept as sent"
    state.apply([*batch, given])
    expected = [
        datetime.fromtimestamp(round(e * 1e6) / 1e6, UTC).isoformat(timespec="microseconds")
        for e in epochs
    ]
    assert [e.timestamp for e in batch] == expected
    assert expected[0] == "2026-11-27T23:48:42.000000+00:00"  # rounded up into the next second
    assert given.timestamp == "kept as sent"
    assert state.peak_in_flight == len(epochs) + 1
