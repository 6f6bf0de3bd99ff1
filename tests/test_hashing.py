from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import warnings
from typing import Any

import attrs
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tracebus

# Computed once with hashlib over the seed's recipe (sort-keyed json.dumps of a dict, else str).
VECTORS: list[tuple[Any, str]] = [
    ({"b": 1, "a": [1, 2]}, "3813f9409eb0095b"),
    ({}, "44136fa355b3678a"),
    ("hello", "2cf24dba5fb0a30e"),
    (42, "73475cb40a568e8d"),
    (None, "dc937b59892604f5"),
    ([1, "x"], "f673bb2ed1633a6b"),
    ({"nested": {"z": 1, "y": None}}, "8fbe81511ab640bd"),
]


@pytest.mark.parametrize(("data", "expected"), VECTORS)
def test_hash_vectors_match_existing_traces(data: Any, expected: str) -> None:
    assert tracebus.hash_output(data) == expected


def _seed_recipe(data: Any) -> str:
    text = json.dumps(data, sort_keys=True) if isinstance(data, dict) else str(data)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@given(json_values)
def test_hash_equals_the_seed_recipe_for_any_json_value(data: Any) -> None:
    assert tracebus.hash_output(data) == _seed_recipe(data)


def test_dict_json_cannot_encode_is_hashed_by_str() -> None:
    data = {"when": object}
    assert tracebus.hash_output(data) == hashlib.sha256(str(data).encode()).hexdigest()[:16]


@dataclasses.dataclass
class _Point:
    y: int
    x: int


@dataclasses.dataclass
class _PointOtherOrder:
    x: int
    y: int


class _Row(msgspec.Struct):
    name: str
    size: float


@attrs.define
class _Answer:
    text: str
    tokens: int


class _ModelLike:
    """What a pydantic model offers: ``model_dump(mode="json")``."""

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        assert mode == "json"
        return dict(self._fields)


def _canonical_digest(fields: Any) -> str:
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (_Point(y=2, x=1), {"x": 1, "y": 2}),
        (_Row("a", 1.5), {"name": "a", "size": 1.5}),
        (_Answer("hi", 3), {"text": "hi", "tokens": 3}),
        (_ModelLike(b=2, a="z"), {"a": "z", "b": 2}),
        ([_Point(1, 2), _Row("b", 0.0)], [{"x": 2, "y": 1}, {"name": "b", "size": 0.0}]),
        ((_Answer("t", 1),), [{"text": "t", "tokens": 1}]),
        ({"point": _Point(3, 4)}, {"point": {"x": 4, "y": 3}}),
    ],
)
def test_structured_values_hash_by_their_sorted_fields(data: Any, fields: Any) -> None:
    assert tracebus.hash_output(data) == _canonical_digest(fields)


def test_field_order_does_not_change_the_hash() -> None:
    assert tracebus.hash_output(_Point(y=2, x=1)) == tracebus.hash_output(_PointOtherOrder(1, 2))


def test_a_structured_value_hashes_alike_in_another_process() -> None:
    code = (
        "import dataclasses, tracebus\n"
        "@dataclasses.dataclass\n"
        "class _Point:\n    y: int\n    x: int\n"
        "print(tracebus.hash_output([_Point(y=2, x=1)]))\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == tracebus.hash_output([_Point(y=2, x=1)])


def test_a_value_whose_str_holds_an_address_warns_once_and_says_what_to_do() -> None:
    class Opaque:
        pass

    value = Opaque()
    with pytest.warns(tracebus.TracebusWarning) as warned:
        first = tracebus.hash_output(value)
        tracebus.hash_output(Opaque())
    (warning,) = warned
    message = str(warning.message)
    assert "holds a memory address" in message
    assert "hash a value that describes the output instead" in message
    assert warning.filename == __file__  # points at the caller
    assert first == hashlib.sha256(str(value).encode()).hexdigest()[:16]  # the seed's hash


def test_plain_lists_and_text_keep_the_seeds_hash_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tracebus.hash_output([1, "x"]) == "f673bb2ed1633a6b"
        text = "loaded at 0x7f3a2c1b in memory"  # text is the output itself: stable
        assert tracebus.hash_output(text) == hashlib.sha256(text.encode()).hexdigest()[:16]


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


class _StrRaises:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param({"deep": _nested(100_000)}, "RecursionError", id="deep-dict"),
        pytest.param(_nested(100_000), "RecursionError", id="deep-list"),
        pytest.param(_StrRaises(), "RuntimeError", id="str-raises"),
    ],
)
def test_a_value_nothing_can_read_still_hashes_and_warns(data: Any, error: str) -> None:
    with pytest.warns(tracebus.TracebusWarning, match=f"raised {error}") as caught:
        digest = tracebus.hash_output(data)
    assert len(caught) == 1 and "describes the output instead" in str(caught[0].message)
    assert len(digest) == 16 and digest == tracebus.hash_output(data)  # stable
