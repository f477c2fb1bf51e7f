"""`tieout report monthly` on the demo: one row per active customer, systems side by side, a label
per row matching the injected defects, counts per label, an XLSX analysts can filter."""

from __future__ import annotations

import csv
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from tieout.categories import CATEGORIES
from tieout.cli import run_cli
from tieout.reports.monthly import COLUMNS, LABEL_OF_CATEGORY, LABELS, label_for, labels_markdown

from .conftest import DemoRun

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def report(demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out_dir = tmp_path_factory.mktemp("monthly")
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", "200")
        with redirect_stdout(out), redirect_stderr(err):
            code = run_cli(["report", "monthly", "--period", "2026-09", "-c", str(demo_run.path / "tieout.yaml"),
                            "--out", str(out_dir)])
    assert code == 0, err.getvalue()
    return out_dir, out.getvalue()


def _rows(out_dir: Path) -> list[dict[str, str]]:
    with (out_dir / "monthly-2026-09.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_every_injected_defect_labels_its_customer(report: tuple[Path, str], demo_run: DemoRun) -> None:
    rows = {r["customer"]: r for r in _rows(report[0])}
    injected = [(c, s.split("|")[0]) for chk, c, s in demo_run.expected if chk == "crm_operations"]
    assert injected
    for category, customer in injected:
        assert category in rows[customer]["issues"].split("; "), (customer, category)
        assert rows[customer]["label"] != "OK"
    flagged = {cust for _, cust in injected}
    assert all(r["label"] == "OK" and r["issues"] == "" for c, r in rows.items() if c not in flagged)


def test_rows_show_each_system_side_by_side(report: tuple[Path, str]) -> None:
    rows = _rows(report[0])
    assert list(rows[0]) == list(COLUMNS)
    ok = [r for r in rows if r["label"] == "OK" and r["billed_seats"]]
    assert len(ok) > 100
    for r in ok[:50]:
        assert r["crm_seats"] == r["billed_seats"] == r["operations_providers"]
        assert r["crm_go_live"] and r["billing_start"] and r["first_provider"]
    underbilled = next(r for r in rows if "underbilled" in r["issues"])
    assert int(underbilled["operations_providers"]) > int(underbilled["billed_seats"])
    assert float(underbilled["money_at_risk"]) > 0


def test_counts_per_label_are_printed_and_add_up(report: tuple[Path, str]) -> None:
    out_dir, out = report
    rows = _rows(out_dir)
    for lb in LABELS:
        n = sum(1 for r in rows if r["label"] == lb.name)
        assert any(line.split("│")[1:3] and lb.name in line and f" {n} " in line for line in out.splitlines()), lb
    assert f"{len(rows)} active customers in 2026-09" in out


def test_xlsx_has_frozen_header_filters_widths_and_colour(report: tuple[Path, str]) -> None:
    from openpyxl import load_workbook

    wb = load_workbook(report[0] / "monthly-2026-09.xlsx")
    ws = wb["customers"]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref and ws.auto_filter.ref.startswith("A1:")
    assert [c.value for c in ws[1]] == list(COLUMNS)
    assert all(ws.column_dimensions[chr(65 + i)].width >= len(COLUMNS[i]) for i in range(10))
    colours = {lb.name: lb.colour for lb in LABELS}
    label_col = COLUMNS.index("label")
    for row in ws.iter_rows(min_row=2, max_row=min(ws.max_row, 300)):
        cell = row[label_col]
        assert str(cell.fill.start_color.rgb).endswith(colours[str(cell.value)])
    assert {r[0].value for r in wb["labels"].iter_rows(min_row=2)} == {lb.name for lb in LABELS}


def test_labels_cover_every_category_of_the_check_and_are_documented() -> None:
    from tieout.checks import CHECKS

    assert set(CHECKS["crm_operations"].categories) == set(LABEL_OF_CATEGORY)
    assert set(LABEL_OF_CATEGORY) <= set(CATEGORIES)
    assert label_for(set()) == "OK"
    assert label_for({"go_live_mismatch", "missing_from_billing"}) == "Missing from billing"
    doc = (ROOT / "docs" / "report-labels.md").read_text(encoding="utf-8")
    assert doc == labels_markdown(), "stale: tieout report labels --markdown > docs/report-labels.md"


def test_bad_period_is_a_clear_error(demo_run: DemoRun, tmp_path: Path) -> None:
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = run_cli(["report", "monthly", "--period", "2026-13", "-c", str(demo_run.path / "tieout.yaml"),
                        "--out", str(tmp_path)])
    assert code == 2
    assert err.getvalue().splitlines()[0] == "--period: '2026-13' is not a month (YYYY-MM)"
