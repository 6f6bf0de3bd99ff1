"""Retention: which runs of a workflow to keep, and removing the others a whole run at a time.

The policy is per workflow and step (the runs of one workflow id share a step): keep the
newest ``keep`` runs and those younger than ``older_than_days``; with both given a run goes
only when neither keeps it. A run whose writer holds its lock is never removed (nor counted
as removed), whatever its age.

A run's files go in one order, the one ``StoredRun.files`` gives: the metadata first, then
the logs, the audit trace, and the main trace last, then the collector's registry entry, the
archive directory once empty, and the lock. A removal stopped half way (a crash, a file that
cannot be removed) so leaves a trace and nothing that contradicts it: readers that find no
metadata read the trace, which says what the metadata said (the status, the counts), and the
next prune finds the run by that trace and finishes it. The other order would leave a
metadata file naming a trace that is gone, which readers would take for a run of no events.
The run's lock is held throughout, so no collector takes the run back meanwhile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._catalog import StoredRun, catalog, lockable
from ._exceptions import RunLockedError
from ._lock import RunLock, run_lock_path

DAY_SECONDS = 86400.0


@dataclass(frozen=True, slots=True)
class Retention:
    """Which runs of each workflow to keep: the newest ``keep``, and/or those started less
    than ``older_than_days`` ago (at least one of the two).

    Raises ValueError for neither given, a negative or non-whole ``keep`` or a negative or
    non-finite ``older_than_days``.
    """

    keep: int | None = None
    older_than_days: float | None = None

    def __post_init__(self) -> None:
        if self.keep is None and self.older_than_days is None:
            raise ValueError("retention needs keep=, older_than_days= or both")
        if self.keep is not None and (
            not isinstance(self.keep, int) or isinstance(self.keep, bool) or self.keep < 0
        ):
            raise ValueError(f"keep must be a whole number of runs >= 0, got {self.keep!r}")
        days = self.older_than_days
        if days is not None and (
            not isinstance(days, int | float)
            or isinstance(days, bool)
            or not 0 <= days < float("inf")
        ):
            raise ValueError(f"older_than_days must be a number of days >= 0, got {days!r}")


@dataclass(slots=True)
class Plan:
    """What a retention policy does to a set of runs: ``remove`` and ``keep``, and of those
    kept, the ``running`` ones (their writer holds the lock) it would have removed."""

    remove: list[StoredRun] = field(default_factory=list)
    keep: list[StoredRun] = field(default_factory=list)
    running: list[StoredRun] = field(default_factory=list)


def plan(runs: Sequence[StoredRun], policy: Retention, now: float | None = None) -> Plan:
    """Sort ``runs`` into those ``policy`` removes and those it keeps, per workflow and step."""
    now = time.time() if now is None else now
    groups: dict[tuple[Path, str, str], list[StoredRun]] = {}
    for run in runs:
        key = (run.output_dir, run.workflow_id or "", run.step_num)
        groups.setdefault(key, []).append(run)
    result = Plan()
    for group in groups.values():
        group.sort(key=_newest_first)
        for rank, run in enumerate(group):
            kept = policy.keep is not None and rank < policy.keep
            if policy.older_than_days is not None:
                age = now - run.started if run.started is not None else float("inf")
                kept = kept or age < policy.older_than_days * DAY_SECONDS
            if kept:
                result.keep.append(run)
            elif run.locked():
                result.keep.append(run)
                result.running.append(run)
            else:
                result.remove.append(run)
    return result


def _newest_first(run: StoredRun) -> tuple[float, str]:
    return (-(run.started if run.started is not None else float("-inf")), str(run.trace))


def remove_run(run: StoredRun) -> int:
    """Remove every file of ``run`` (see the module's docstring for the order); the bytes
    freed.

    Raises RunLockedError when a writer holds the run's lock (nothing is removed), OSError
    when a file cannot be removed (the files before it are gone, those after it are not).
    """
    lock: RunLock | None = None
    if lockable(run.workflow_id, run.run_id):
        assert run.workflow_id is not None and run.run_id is not None
        lock = RunLock(run_lock_path(run.output_dir, run.workflow_id, run.run_id))
        lock.acquire()  # RunLockedError: a writer has it
    try:
        freed = run.freed_bytes()
        for path in run.files:
            if lock is not None and path == lock.path:
                continue  # removed last, while held, by release
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        if run.archive is not None:
            for directory in (run.archive, run.archive.parent):
                try:
                    directory.rmdir()
                except OSError:  # not empty: another run's archive, or a user's files
                    break
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    if lock is not None:
        lock.release(remove=True)
    return freed


def apply_retention(
    output_dir: str | os.PathLike[str],
    workflow_id: str,
    policy: Retention,
    *,
    spare: Path | None = None,
) -> tuple[int, int]:
    """Apply ``policy`` to the runs of ``workflow_id`` under ``output_dir`` (an observer's, at
    the end of its run, ``spare`` being that run's trace): the runs removed and bytes freed.

    A run that cannot be removed (its writer took the lock meanwhile, a file that cannot be
    removed) is left; raises nothing but for an output directory that cannot be listed
    (OSError).
    """
    from ._layout import step_number

    stored = [
        run
        for run in catalog(output_dir, step=step_number(workflow_id))
        if run.workflow_id == workflow_id
    ]
    removed = freed = 0
    for run in plan(stored, policy).remove:
        if run.trace == spare:
            continue  # counted among the newest, never removed by its own writer
        try:
            freed += remove_run(run)
        except (RunLockedError, OSError):
            continue
        removed += 1
    return removed, freed
