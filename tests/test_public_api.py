from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

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


def test_every_public_name_imports_from_the_package() -> None:
    namespace: dict[str, object] = {}
    exec("from tracebus import *", namespace)
    assert set(tracebus.__all__) <= set(namespace)
    assert tracebus.Observer is tracebus._observer.Observer
    assert tracebus.connect_sync is tracebus._service._sync_client.connect_sync


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
