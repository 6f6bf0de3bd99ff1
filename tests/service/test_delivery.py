"""The remote observer's delivery against an in-memory collector: sealed batches, their
acknowledgement, resending after a broken link, and the counting of what was lost."""

from __future__ import annotations

import re
from typing import Any

import pytest

import tracebus
from tracebus._exceptions import ServiceError, ServiceUnavailableError

from .memory_link import MemoryCollector


def _observer(collector: MemoryCollector, **options: Any) -> tracebus.RemoteObserver:
    return tracebus.RemoteObserver(collector, "wf", run_id="run-1", producer="p1", **options)


async def test_each_batch_is_sealed_once_with_its_id_first_seq_and_count() -> None:
    collector = MemoryCollector()
    async with _observer(collector, max_batch=3) as obs:
        for index in range(7):
            await obs.note(f"n{index}")
    stats = obs.statistics()
    assert (stats.emitted, stats.delivered, stats.rejected, stats.undelivered) == (9, 9, 0, 0)
    assert [sent.id for sent in collector.received] == list(range(1, len(collector.received) + 1))
    seq = 1
    for sent in collector.received:
        assert sent.first_seq == seq and 1 <= sent.count <= 3
        seq += sent.count
    assert [s for s, _ in collector.events()] == list(range(1, 10))
    kinds = [kind for _, kind in collector.events()]
    assert kinds == ["workflow_start", *["note"] * 7, "workflow_complete"]
    assert [hello.producer for hello in collector.hellos] == ["p1"]


async def test_a_broken_link_sends_again_every_batch_not_acknowledged() -> None:
    collector = MemoryCollector()
    collector.drop_on = {2}
    async with _observer(collector) as obs:
        await obs.note("lost with the link")
        await obs.flush()
        await obs.note("after")
    stats = obs.statistics()
    assert (stats.delivered, stats.undelivered, stats.reconnects) == (4, 0, 1)
    second = [sent for sent in collector.received if sent.id == 2]
    assert len(second) == 2 and second[0] == second[1]  # the same batch, sealed once
    assert [s for s, _ in collector.events()] == [1, 2, 2, 3, 4]
    assert len(collector.hellos) == 2


async def test_a_transient_refusal_on_reconnecting_is_tried_again() -> None:
    collector = MemoryCollector()
    collector.drop_on = {2}
    async with _observer(collector) as obs:
        collector.connect_errors = [
            ServiceError("too_many_connections", "full"),
            ServiceUnavailableError("restarting"),
            ServiceError("shutting_down", "stopping"),
        ]
        await obs.note("one")
    stats = obs.statistics()
    assert (stats.delivered, stats.undelivered, stats.reconnects) == (3, 0, 1)
    assert collector.connect_errors == []


async def test_a_refused_batch_counts_its_events_as_rejected() -> None:
    collector = MemoryCollector()
    collector.refuse = {2: "run_ended"}
    with pytest.raises(tracebus.DeliveryError) as raised:
        async with _observer(collector, max_batch=2) as obs:
            await obs.note("a")
            await obs.note("b")
            await obs.flush()
            await obs.note("c")
    refused = next(sent.count for sent in collector.received if sent.id == 2)
    assert (raised.value.rejected, raised.value.undelivered) == (refused, 0)
    assert "first refusal: run_ended: no" in raised.value.reason
    stats = obs.statistics()
    assert stats.delivered + stats.rejected == stats.emitted == 5


async def test_a_fatal_refusal_on_reconnecting_gives_up_and_counts_the_rest_undelivered() -> None:
    collector = MemoryCollector()
    collector.drop_on = {2}
    with pytest.raises(tracebus.DeliveryError) as raised:
        async with _observer(collector) as obs:
            collector.connect_errors = [ServiceError("bad_token", "the token is missing or wrong")]
            await obs.note("held")
            with pytest.raises(ServiceError, match="bad_token"):
                await obs.flush()
            await obs.note("after giving up")
    # the note in the dropped batch, the one after, and the run's end
    assert (raised.value.undelivered, raised.value.rejected) == (3, 0)
    assert raised.value.reason.startswith("bad_token: the token is missing or wrong")
    assert obs.statistics().delivered == 1


async def test_a_collector_that_stays_away_past_reconnect_timeout_loses_what_was_held() -> None:
    collector = MemoryCollector()
    collector.drop_on = {2}
    with pytest.raises(tracebus.DeliveryError) as raised:
        async with _observer(collector, reconnect_timeout=0.3) as obs:
            collector.down = True
            await obs.note("one")
            await obs.note("two")
            with pytest.raises(ServiceUnavailableError, match="gave up reconnecting after 0.3s"):
                await obs.flush()
    assert (raised.value.undelivered, raised.value.rejected) == (3, 0)
    stats = obs.statistics()
    assert (stats.delivered, stats.undelivered, stats.unacknowledged) == (1, 3, 0)


async def test_an_event_larger_than_a_batch_may_be_is_rejected_alone_leaving_no_gap() -> None:
    collector = MemoryCollector(max_batch_bytes=600)
    with pytest.raises(tracebus.DeliveryError) as raised:
        async with _observer(collector) as obs:
            await obs.note("small")
            await obs.note("large", blob="x" * 1_000)
            await obs.note("small again")
    assert (raised.value.rejected, raised.value.undelivered) == (1, 0)
    assert re.search(r"frame_too_large: an event is larger than a frame may be", str(raised.value))
    assert all(len(sent.body) <= 600 for sent in collector.received)
    assert [s for s, _ in collector.events()] == [1, 2, 3, 4]
    assert obs.statistics().delivered == 4
