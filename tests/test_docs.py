"""Docs generated from the registries stay in step with them (STYLE: registries, not parallel lists)."""

from __future__ import annotations

from pathlib import Path

from tieout.categories import CATEGORIES
from tieout.checks import CHECKS
from tieout.cli import categories_markdown

ROOT = Path(__file__).parent.parent


def test_categories_doc_is_generated_from_the_registry() -> None:
    doc = (ROOT / "docs" / "categories.md").read_text(encoding="utf-8")
    assert doc == categories_markdown(), (
        "docs/categories.md is stale: python -m tieout categories --markdown > docs/categories.md")


def test_categories_doc_lists_every_category_with_its_definition() -> None:
    doc = (ROOT / "docs" / "categories.md").read_text(encoding="utf-8")
    for c in CATEGORIES.values():
        assert f"| `{c.name}` | {c.definition.replace('|', chr(92) + '|')} |" in doc, c.name


def test_every_category_a_check_raises_is_in_the_vocabulary() -> None:
    for check in CHECKS.values():
        assert set(check.categories) <= set(CATEGORIES), check.name


def test_readme_set_up_is_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install . && tieout demo" in readme
    assert "bash scripts/test.sh" in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.startswith("#!/usr/bin/env bash") and "exec bash scripts/test.sh" in ci


def test_readme_documents_the_exit_codes() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |"):
        assert code in readme


def test_metrics_doc_is_generated_from_the_registry() -> None:
    from tieout.metrics import metrics_markdown

    doc = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert doc == metrics_markdown(), "docs/metrics.md is stale: regenerate it as its header says"
