from __future__ import annotations

import ast
import inspect
import pickle
import subprocess
import sys
import tomllib
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest

import tracebus


def _public(names: list[str]) -> set[str]:
    return {
        name
        for name in names
        if not name.startswith("_") and not isinstance(getattr(tracebus, name), ModuleType)
    } - {"annotations"}


def test_all_lists_exactly_the_public_names() -> None:
    # dir() lists the names imported on first use too; resolving them all adds nothing else
    assert sorted(tracebus.__all__) == sorted(_public(dir(tracebus)))
    assert sorted(tracebus.__all__) == sorted(_public(list(vars(tracebus))))


def test_the_names_type_checkers_see_are_the_names_loaded_lazily() -> None:
    """The facade names each lazy name twice, for type checkers (its ``if TYPE_CHECKING:``
    imports) and for ``__getattr__`` (``_LAZY``); they must say the same."""
    assert tracebus.__file__ is not None
    tree = ast.parse(Path(tracebus.__file__).read_text(encoding="utf-8"))
    guarded = next(
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )
    seen = {
        alias.name: f"{'.' * statement.level}{statement.module}"
        for statement in guarded.body
        if isinstance(statement, ast.ImportFrom) and statement.level
        for alias in statement.names
    }
    assert seen == tracebus._LAZY


def test_every_public_name_imports_from_the_package() -> None:
    namespace: dict[str, object] = {}
    exec("from tracebus import *", namespace)
    assert set(tracebus.__all__) <= set(namespace)
    assert tracebus.Observer is tracebus._observer.Observer
    from tracebus._service import _sync_client

    assert tracebus.connect_sync is _sync_client.connect_sync


def test_a_name_the_package_does_not_have_raises_attribute_error() -> None:
    try:
        tracebus.Obsrver  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert str(exc) == "module 'tracebus' has no attribute 'Obsrver'"
    else:
        raise AssertionError("no AttributeError")


def test_importing_the_package_and_compat_loads_none_of_the_heavy_parts() -> None:
    code = "import sys, tracebus, tracebus.compat; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split())  # fmt: skip
    heavy = {"asyncio", "anyio", "msgspec", "aiofiles", "tqdm", "ssl", "nats"}
    heavy |= {f"tracebus.{part}" for part in ("_bus", "_sync", "_nats", "_service", "_tools")}
    assert loaded & heavy == set()
    assert {"tracebus", "tracebus.compat"} <= loaded


def test_every_exported_error_documents_when_it_is_raised() -> None:
    for name in tracebus.__all__:
        obj = getattr(tracebus, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert obj.__doc__ and "raised" in obj.__doc__.lower(), name


def test_the_package_declares_the_python_it_runs_on() -> None:
    """CI runs the suite under each CPython 3.11+ the machine has: each must be declared."""
    with open(Path(__file__).parents[1] / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"Programming Language :: Python :: {running}" in project["classifiers"]
    assert project["requires-python"] == ">=3.11"


def _options(func: Any) -> dict[str, Any]:
    """The keyword-only parameters of ``func`` and their defaults."""
    parameters = inspect.signature(func).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}


def test_every_flavour_takes_the_options_that_apply_to_it_spelled_alike() -> None:
    """A thread-side twin takes its async original's options, plus the loop thread's own;
    local and remote observers and the bus share the queue's options and defaults."""
    observer, remote = _options(tracebus.Observer), _options(tracebus.connect)
    loop_thread = {"backend": "asyncio", "exit_timeout": 5.0}
    assert _options(tracebus.SyncObserver) == {**observer, **loop_thread, "end_on_close": True}
    assert _options(tracebus.RemoteObserver) == remote
    assert _options(tracebus.connect_sync) == {**remote, **loop_thread}
    assert _options(tracebus.SyncRemoteObserver) == _options(tracebus.connect_sync)
    queue = {"capacity": 10_000, "overflow": "block", "close_timeout": 30.0}
    for options in (observer, remote, _options(tracebus.EventBus)):
        assert {name: options[name] for name in queue} == queue
    assert observer["run_id"] is remote["run_id"] is None


def test_public_classes_and_functions_report_the_facade_as_their_module() -> None:
    for name in tracebus.__all__:
        obj = getattr(tracebus, name)
        if isinstance(obj, type) or inspect.isfunction(obj):
            assert obj.__module__ == "tracebus", name
    assert repr(tracebus.RemoteObserver) == "<class 'tracebus.RemoteObserver'>"
    statistics = tracebus.BusStatistics(1, 1, 0, 0, 1, 0, 0)
    assert b"tracebus._" not in pickle.dumps(statistics)
    assert pickle.loads(pickle.dumps(statistics)) == statistics
    event = tracebus.NodeStart(epoch_seconds=1.0, pid=1, workflow_id="w", run_id="r", node_id="n")
    assert pickle.loads(pickle.dumps(event)) == event
    # msgspec still reads the events' annotations once their module is the facade
    decoded = msgspec.json.decode(msgspec.json.encode(event), type=tracebus.AnyEvent)
    assert decoded == event
    with pytest.raises(tracebus.QueueFullError) as raised:
        raise tracebus.QueueFullError("full")
    assert "tracebus.QueueFullError: full" in "".join(traceback.format_exception(raised.value))


def test_the_version_is_declared_once() -> None:
    import importlib.metadata

    with open(Path(__file__).parents[1] / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/tracebus/_version.py"
    assert importlib.metadata.version("tracebus") == tracebus.__version__
    assert tracebus.__version__ is tracebus._version.__version__
