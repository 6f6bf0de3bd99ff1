"""The core suite's async tests, driven again on trio through anyio.run(backend="trio")."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests import (
    test_bus,
    test_file_faults,
    test_injection,
    test_memory,
    test_nesting,
    test_observer,
    test_sinks,
    test_user_sinks,
    test_values,
)

TestFn = Callable[..., Coroutine[Any, Any, None]]

CORE_TESTS: list[TestFn] = [
    test_bus.test_events_reach_the_sink_in_emit_order,
    test_bus.test_emit_nowait_raises_when_full,
    test_bus.test_drop_policy_drops_and_counts_but_keeps_lifecycle_events,
    test_bus.test_emit_waits_while_full_then_proceeds,
    test_bus.test_failing_sink_does_not_stop_the_others_and_close_reports_it,
    test_bus.test_close_is_bounded_and_reports_what_was_not_written,
    test_bus.test_subscriber_sees_events_emitted_after_it_subscribed,
    test_bus.test_slow_subscriber_is_counted_and_never_stalls_the_writer,
    test_bus.test_threads_emit_in_order_with_backpressure,
    test_bus.test_thread_emit_times_out_when_the_queue_stays_full,
    test_observer.test_node_block_that_raises_records_failure_and_reraises,
    test_observer.test_block_that_raises_records_workflow_error,
    test_observer.test_skips_retries_and_notes_are_recorded,
    test_observer.test_unencodable_output_summary_is_stored_as_flagged_repr,
    test_observer.test_thousand_tasks_and_eight_threads_lose_nothing,
    test_observer.test_cancelled_run_leaves_complete_readable_files,
    test_observer.test_two_runs_in_the_same_second_get_separate_files,
    test_observer.test_drop_policy_counts_drops_and_keeps_lifecycle_events,
    test_sinks.test_trace_removed_mid_run_is_recreated_and_the_loss_reported,
    test_values.test_lone_surrogates_are_written_escaped_and_the_run_goes_on,
    test_values.test_payload_values_json_would_lose_are_kept_visibly,
    test_values.test_an_event_the_writer_cannot_encode_leaves_an_encode_error_in_its_place,
    test_values.test_a_payload_over_the_bound_is_stored_as_its_hash_size_and_prefix,
    test_memory.test_subscribers_that_break_out_are_released,
    test_user_sinks.test_a_hung_user_sink_does_not_hold_up_the_run,
    test_user_sinks.test_a_lagging_user_sink_loses_and_counts_only_what_did_not_fit,
    test_file_faults.test_a_run_file_replaced_by_a_symlink_is_not_followed,
    test_file_faults.test_a_symlink_where_a_run_file_goes_is_refused_at_entry,
    test_injection.test_a_node_id_cannot_forge_a_log_line,
    test_nesting.test_a_node_is_current_inside_its_block_and_parents_the_nodes_opened_there,
    test_nesting.test_tasks_and_worker_threads_started_inside_a_node_inherit_it,
    test_nesting.test_explicit_parent_and_depends_on_are_recorded,
]


@pytest.mark.parametrize("test", CORE_TESTS, ids=lambda t: f"{t.__module__}.{t.__name__}")
def test_on_trio(test: TestFn, tmp_path: Path) -> None:
    params = inspect.signature(test).parameters
    kwargs = {"out": tmp_path / "runs"} if "out" in params else {}
    anyio.run(functools.partial(test, **kwargs), backend="trio")


def test_disk_full_on_trio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    anyio.run(
        functools.partial(
            test_sinks.test_disk_full_is_reported_and_producers_carry_on,
            tmp_path / "runs",
            monkeypatch,
        ),
        backend="trio",
    )
