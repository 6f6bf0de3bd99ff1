from __future__ import annotations

from types import ModuleType

import tracebus


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(tracebus).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    public -= {"annotations"}
    assert sorted(tracebus.__all__) == sorted(public)


def test_every_exported_error_documents_when_it_is_raised() -> None:
    for name in tracebus.__all__:
        obj = getattr(tracebus, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert obj.__doc__ and "raised" in obj.__doc__.lower(), name
