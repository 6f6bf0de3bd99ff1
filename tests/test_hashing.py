from __future__ import annotations

import hashlib
import json
from typing import Any

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
