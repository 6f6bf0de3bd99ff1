from __future__ import annotations

from tracebus._factory import EventFactory
from tracebus._state import IsoClock, RunState


def test_per_node_details_are_capped_but_totals_are_not() -> None:
    events = EventFactory("wf", "r")
    state = RunState("wf", "r", 5, 0.0, max_node_details=3)
    batch = []
    for i in range(5):
        batch.append(events.node_start(f"n{i}", i))
        batch.append(events.node_success(f"n{i}", 1.0, None, None, 0.25))
    state.apply(batch)
    assert list(state.node_times) == ["n0", "n1", "n2"]
    assert state.node_details_dropped == 2
    assert state.nodes_completed == 5
    assert state.cost_usd == 1.25
    assert [e.node_index for e in batch[1::2]] == [0, 1, 2, 3, 4]  # type: ignore[attr-defined]
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
