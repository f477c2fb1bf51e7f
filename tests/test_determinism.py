"""Determinism and idempotence, as properties of whole runs on a small demo workspace: the same
data in any row order, or split across several files, gives identical findings, fingerprints and
metrics; running twice on unchanged data creates no new finding.
"""

from __future__ import annotations

import csv
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tieout.config import load_config
from tieout.demo import generate_workspace
from tieout.pipeline import RunResult, run
from tieout.store import Store

# Files whose row order means something (the QuickBooks GL groups rows under account sections).
ORDERED_LAYOUTS = ("quickbooks_gl.csv",)
NOT_SOURCES = ("aliases.csv",)  # the entity alias table (entities.alias_file), not rows of a source


@dataclass
class Workspace:
    path: Path
    baseline: RunResult


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    path = tmp_path_factory.mktemp("determinism")
    generate_workspace(path, customers=40, seed=11)
    return Workspace(path, run(load_config(path / "tieout.yaml")))


def signature(result: RunResult) -> list[tuple[Any, ...]]:
    """What must not depend on row order or file layout: every finding field a user reads, with
    evidence as (table, key) — its source_ref (file:line) moves with the rows, by design."""
    return sorted(
        (f.finding_id, f.check, f.category, f.severity, f.customer_id, f.currency, f.amount_at_risk, f.expected,
         f.actual, f.period, f.subject, f.explanation, tuple(sorted((e.table, e.key) for e in f.evidence)))
        for f in result.findings
    )


def _rows_read(result: RunResult) -> dict[str, tuple[int, int, int]]:
    out: dict[str, list[int]] = {}
    for c in result.counts:
        acc = out.setdefault(c.table, [0, 0, 0])
        acc[0] += c.read
        acc[1] += c.accepted
        acc[2] += c.quarantined
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def rearranged(src: Path, dst: Path, rnd: random.Random, max_parts: int) -> None:
    """Copy a workspace with every data file's rows shuffled and split into 1..max_parts files."""
    shutil.copytree(src / "data", dst / "data")
    config = (src / "tieout.yaml").read_text(encoding="utf-8")
    for f in sorted((dst / "data").glob("*.csv")):
        if f.name in ORDERED_LAYOUTS or f.name in NOT_SOURCES:
            continue
        raw = f.read_bytes()
        encoding = "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8"
        with f.open(encoding=encoding, newline="") as fh:
            header, *rows = list(csv.reader(fh))
        rnd.shuffle(rows)
        parts = rnd.randint(1, max_parts)
        f.unlink()
        for i in range(parts):
            chunk = rows[i::parts]
            with (dst / "data" / f"{f.stem}.part{i}.csv").open("w", encoding=encoding, newline="") as fh:
                csv.writer(fh).writerows([header, *chunk])
        assert f"path: data/{f.name}\n" in config
        config = config.replace(f"path: data/{f.name}\n", f"path: 'data/{f.stem}.part*.csv'\n")
    (dst / "tieout.yaml").write_text(config, encoding="utf-8")


@given(st.randoms(use_true_random=False), st.integers(1, 3))
@settings(max_examples=3, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
    HealthCheck.large_base_example, HealthCheck.data_too_large])  # a shuffle of a whole workspace draws a lot
def test_row_order_and_file_split_do_not_change_findings(
    workspace: Workspace, tmp_path_factory: pytest.TempPathFactory, rnd: random.Random, max_parts: int
) -> None:
    dst = tmp_path_factory.mktemp("rearranged")
    rearranged(workspace.path, dst, rnd, max_parts)
    result = run(load_config(dst / "tieout.yaml"))
    assert len(workspace.baseline.findings) > 5
    assert signature(result) == signature(workspace.baseline)
    assert result.metrics == workspace.baseline.metrics
    assert _rows_read(result) == _rows_read(workspace.baseline)


def test_running_twice_creates_no_new_findings(workspace: Workspace) -> None:
    """The fixture's run was the first on the workspace's own store; run again on unchanged data."""
    cfg = load_config(workspace.path / "tieout.yaml")
    store = Store(cfg.store_url())
    try:
        assert [r.status for r in store.runs()] == ["succeeded"]  # the baseline, and nothing else yet
        first = workspace.baseline
        second = run(cfg, store=store)
    finally:
        store.close()
    assert first.lifecycle["new"] == len(first.findings) > 0
    assert second.lifecycle["new"] == 0 and second.lifecycle["reopened"] == 0
    assert second.lifecycle["seen_again"] == len(second.findings)
    assert second.lifecycle["no_longer_present"] == 0
    assert signature(second) == signature(first) == signature(workspace.baseline)
    assert second.metrics == first.metrics
