"""Shared fixtures: a generated demo workspace, run once per session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tieout.config import load_config
from tieout.demo import Manifest, generate_workspace
from tieout.engines import create_engine
from tieout.engines.base import Engine
from tieout.pipeline import RunResult, run
from tieout.store import Store

from .postgres import PostgresServer, postgres_server


@dataclass
class DemoRun:
    path: Path
    manifest: Manifest
    expected: set[tuple[str, str, str]]
    result: RunResult
    manifest_json: dict[str, Any]


def _demo(tmp_path_factory: pytest.TempPathFactory, customers: int, seed: int) -> DemoRun:
    path = tmp_path_factory.mktemp(f"demo-{seed}")
    manifest = generate_workspace(path, customers=customers, seed=seed)
    result = run(load_config(path / "tieout.yaml"))
    data = json.loads((path / "manifest.json").read_text())
    return DemoRun(path, manifest, {tuple(x) for x in data["expected"]}, result, data)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    return _demo(tmp_path_factory, customers=1200, seed=7)


@pytest.fixture(scope="session")
def demo_run_other_seed(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    return _demo(tmp_path_factory, customers=500, seed=23)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on 127.0.0.1 for the whole session (tests/postgres.py)."""
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh findings store on SQLite and on the real PostgreSQL server (tests/test_store.py)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database()
    s = Store(url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """One DuckDB session per test module (hypothesis examples in a module may share it)."""
    e = create_engine("duckdb")
    yield e
    e.close()
