from __future__ import annotations

from pathlib import Path

import pytest

from . import runs


@pytest.fixture
def success_dir(tmp_path: Path) -> Path:
    return runs.success_run(tmp_path / "success")


@pytest.fixture
def failure_dir(tmp_path: Path) -> Path:
    return runs.failure_run(tmp_path / "failure")


@pytest.fixture
def error_dir(tmp_path: Path) -> Path:
    return runs.error_run(tmp_path / "error")


@pytest.fixture
def retry_dir(tmp_path: Path) -> Path:
    return runs.retry_run(tmp_path / "retry")


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    return runs.empty_run(tmp_path / "empty")


@pytest.fixture
def torn_dir(tmp_path: Path) -> Path:
    return runs.torn_run(tmp_path / "torn")


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    return runs.seed_run(tmp_path / "seed")


@pytest.fixture
def agent_dir(tmp_path: Path) -> Path:
    return runs.agent_run(tmp_path / "agent")
