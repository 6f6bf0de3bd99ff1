"""A thread-pool workflow runner of the kind the old observer served, run as a process.

    python -m tests.compat.runner --observer seed|tracebus --workflow NAME --out DIR

A workflow is a DAG of nodes, each asking a fake model for an answer. The runner executes it
in waves (every node whose dependencies are done), each wave on a pool of worker threads;
each worker starts and ends its node through the observer. A wave with a failed node is the
last: the runner records ``workflow_error`` and exits 1, as the old runner did, with no cost
(the old interface takes none there). Otherwise it records ``workflow_complete`` with what
the model cost, and exits 0.

``--fan-out N`` makes a workflow of N nodes: a root, N - 2 parallel branches and a join.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Node:
    node_id: str
    prompt: str
    depends_on: tuple[str, ...] = ()
    fails: bool = False


@dataclass(frozen=True)
class Workflow:
    workflow_id: str
    nodes: tuple[Node, ...]

    def waves(self) -> list[list[Node]]:
        """The nodes in waves: each wave's dependencies are all in earlier waves."""
        done: set[str] = set()
        pending = list(self.nodes)
        waves = []
        while pending:
            wave = [n for n in pending if all(d in done for d in n.depends_on)]
            if not wave:
                names = [n.node_id for n in pending]
                raise ValueError(f"{self.workflow_id}: a cycle among {names}")
            waves.append(wave)
            done.update(n.node_id for n in wave)
            pending = [n for n in pending if n.node_id not in done]
        return waves


def _chain(workflow_id: str, *specs: tuple[str, tuple[str, ...]], fails: str = "") -> Workflow:
    nodes = tuple(
        Node(node_id, f"{workflow_id}: {node_id}", deps, fails=node_id == fails)
        for node_id, deps in specs
    )
    return Workflow(workflow_id, nodes)


#: The example workflows: an orchestrator's names, spaces and non-ASCII letters included.
EXAMPLES: dict[str, Workflow] = {
    workflow.workflow_id: workflow
    for workflow in (
        _chain(
            "simple analysis workflow",
            ("load data", ()),
            ("summarise", ("load data",)),
            ("critique", ("load data",)),
            ("final report", ("summarise", "critique")),
        ),
        _chain(
            "step_04_populate_mpd",
            ("fetch", ()),
            ("parse", ("fetch",)),
            ("enrich", ("parse",)),
            ("load", ("enrich",)),
        ),
        _chain(
            "step_05_publication_extraction",
            ("search", ()),
            ("extract_a", ("search",)),
            ("extract_b", ("search",)),
            ("extract_c", ("search",)),
            ("merge", ("extract_a", "extract_b", "extract_c")),
            ("publish", ("merge",)),
            fails="extract_b",
        ),
        _chain(
            "étape_06 analyse des données",
            ("collecte", ()),
            ("résumé", ("collecte",)),
            ("synthèse", ("résumé",)),
        ),
    )
}


def fan_out(nodes: int, workflow_id: str = "step_07_fan_out") -> Workflow:
    branches = [f"branch_{index:05d}" for index in range(nodes - 2)]
    return Workflow(
        workflow_id,
        (
            Node("root", "split the task"),
            *(Node(b, f"work on {b}", ("root",)) for b in branches),
            Node("join", "merge the branches", tuple(branches)),
        ),
    )


class ModelError(RuntimeError):
    """The fake model's refusal, as a provider's error would read."""


@dataclass
class FakeModel:
    """Answers every prompt the same way each run; costs per token; waits ``latency``."""

    latency: float = 0.0
    usd_per_token: float = 0.00002
    _calls: list[float] = field(default_factory=list)

    def complete(self, node: Node) -> dict[str, Any]:
        if self.latency:
            time.sleep(self.latency)
        tokens = 50 + int(hashlib.sha256(node.prompt.encode()).hexdigest()[:4], 16) % 200
        cost = tokens * self.usd_per_token
        self._calls.append(cost)  # list.append is atomic: safe from the pool's threads
        if node.fails:
            raise ModelError(f"model refused {node.node_id!r}: context length exceeded")
        return {"text": f"answer to {node.prompt}", "tokens": tokens}

    @property
    def cost_usd(self) -> float:
        return round(sum(self._calls), 6)


def run(
    make_observer: Callable[..., Any],
    workflow: Workflow,
    out: str,
    *,
    workers: int,
    use_tqdm: bool,
    model: FakeModel,
) -> int:
    """Run ``workflow``; return the exit code."""
    observer = make_observer(workflow.workflow_id, out, len(workflow.nodes), use_tqdm=use_tqdm)
    index = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="node") as pool:
        for wave in workflow.waves():
            jobs = []
            for node in wave:
                index += 1
                jobs.append(pool.submit(_execute, observer, model, node, index))
            failed = [node for node, job in zip(wave, jobs, strict=True) if not job.result()]
            if failed:
                names = ", ".join(node.node_id for node in failed)
                observer.workflow_error(f"{len(failed)} node(s) failed: {names}")
                return 1
    observer.workflow_complete(cumulative_cost_usd=model.cost_usd)
    return 0


def _execute(observer: Any, model: FakeModel, node: Node, index: int) -> bool:
    """One node on a worker thread; True if it succeeded."""
    started = time.perf_counter()
    observer.node_start(node.node_id, index)
    try:
        answer = model.complete(node)
    except ModelError as exc:
        observer.node_failure(node.node_id, str(exc), time.perf_counter() - started)
        return False
    summary = {"tokens": answer["tokens"], "chars": len(answer["text"])}
    observer.node_success(
        node.node_id, time.perf_counter() - started, observer.hash_output(answer), summary
    )
    return True


OBSERVERS = {
    "seed": ("tests.compat.seed_observer", "SeedObserver"),
    "tracebus": ("tracebus.compat", "ExecutionObserver"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.compat.runner")
    parser.add_argument("--observer", choices=sorted(OBSERVERS), required=True)
    parser.add_argument("--out", required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--workflow", choices=sorted(EXAMPLES))
    which.add_argument("--fan-out", type=int, metavar="N")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--no-tqdm", action="store_true")
    parser.add_argument("--latency", type=float, default=0.0, help="the model's, in seconds")
    args = parser.parse_args(argv)
    module, name = OBSERVERS[args.observer]
    make_observer = getattr(importlib.import_module(module), name)
    workflow = EXAMPLES[args.workflow] if args.workflow else fan_out(args.fan_out)
    return run(
        make_observer,
        workflow,
        args.out,
        workers=args.workers,
        use_tqdm=not args.no_tqdm,
        model=FakeModel(latency=args.latency),
    )


if __name__ == "__main__":
    sys.exit(main())
