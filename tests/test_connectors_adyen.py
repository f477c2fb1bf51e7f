"""Adyen settlement details report: time zone abbreviations, signed debits/credits, quarantine."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from tieout.config import parse_config
from tieout.engines import create_engine
from tieout.pipeline import ingest
from tieout.quality import FileCount

HEADER = ["Company Account", "Merchant Account", "Psp Reference", "Merchant Reference", "Payment Method",
          "Creation Date", "TimeZone", "Type", "Modification Reference", "Gross Currency", "Gross Debit (GC)",
          "Gross Credit (GC)", "Exchange Rate", "Net Currency", "Net Debit (NC)", "Net Credit (NC)",
          "Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)", "Payment Method Variant",
          "Batch Number"]


def _row(psp: str, ref: str, created: str, tz: str, kind: str, mod: str, debit: str, credit: str,
         net_debit: str, net_credit: str, fees: tuple[str, str, str, str], currency: str = "EUR") -> list[str]:
    return ["Acme", "AcmeEU", psp, ref, "visa", created, tz, kind, mod, currency, debit, credit, "1", currency,
            net_debit, net_credit, *fees, "visa", "42"]


def _ingest_csv(tmp_path: Path, fmt: str, header: list[str], rows: list[list[str]]) -> tuple[
        list[dict[str, Any]], list[FileCount], list[dict[str, Any]]]:
    """Write the report and read it as a source of `fmt`: (gateway transactions, counts, quarantined)."""
    with (tmp_path / "report.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    cfg = parse_config(f"sources:\n  - {{name: adyen, format: {fmt}, path: report.csv}}\n", tmp_path / "tieout.yaml")
    engine = create_engine("duckdb")
    try:
        tables, counts, quarantined, _ = ingest(cfg, engine, lambda _m: None)
        return tables["gateway_transactions"].to_pyarrow().to_pylist(), counts, quarantined
    finally:
        engine.close()


def test_settlement_details(tmp_path: Path) -> None:
    rows = [
        _row("8815", "INV-1", "2026-07-01 10:00:00", "CEST", "Settled", "8815", "", "100.00", "", "97.50",
             ("1.00", "0.50", "0.40", "0.60")),
        _row("8815", "INV-1", "2026-01-15 09:30:00", "CET", "Refunded", "9921", "40.00", "", "40.00", "",
             ("", "", "", "")),
        _row("7001", "INV-2", "2026-07-02 23:30:00", "PDT", "Chargeback", "7001c", "55.00", "", "57.00", "",
             ("2.00", "", "", ""), currency="USD"),
        _row("7002", "INV-3", "2026-07-03 08:00:00", "IST", "Settled", "7002", "", "10.00", "", "9.70",
             ("0.30", "", "", "")),
        _row("7003", "INV-4", "2026-07-03 08:00:00", "CET", "SomethingNew", "7003", "", "10.00", "", "9.70",
             ("0.30", "", "", "")),
        _row("7004", "INV-5", "2026-07-03 08:00:00", "CET", "Settled", "7004", "", "1O.00", "", "9.70",
             ("0.30", "x", "", "")),
    ]
    txns, counts, quarantined = _ingest_csv(tmp_path, "adyen_settlement", HEADER, rows)
    got = {r["txn_id"]: r for r in txns}
    assert [(c.read, c.accepted, c.quarantined) for c in counts] == [(6, 3, 3)]
    charge, refund, dispute = got["8815"], got["9921"], got["7001c"]
    assert (charge["type"], charge["gross"], charge["fee"], charge["net"], charge["currency"]) == (
        "charge", 10000, 250, 9750, "EUR")
    assert str(charge["created_at"]) == "2026-07-01 08:00:00+00:00"  # CEST = UTC+2
    assert str(refund["created_at"]) == "2026-01-15 08:30:00+00:00"  # CET = UTC+1
    assert (refund["type"], refund["gross"], refund["net"], refund["charge_id"]) == ("refund", -4000, -4000, "8815")
    assert str(dispute["created_at"]) == "2026-07-03 06:30:00+00:00"  # PDT = UTC-7: the next day in UTC
    assert (dispute["type"], dispute["gross"], dispute["payout_id"]) == ("dispute", -5500, "42")
    bad = sorted((q["line"], q["column_name"], q["value"]) for q in quarantined)
    assert bad == [(5, "created_at", "2026-07-03 08:00:00 IST"), (6, "type", "SomethingNew"), (7, "gross", "1O.00")]
    assert all(q["file"] == "report.csv" for q in quarantined)


PAR_HEADER = ["Company Account", "Merchant Account", "Psp Reference", "Merchant Reference", "Payment Method",
              "Booking Date", "TimeZone", "Main Currency", "Main Amount", "Record Type", "Payment Currency",
              "Received (PC)", "Authorised (PC)", "Captured (PC)", "Settlement Currency", "Payable (SC)",
              "Commission (SC)", "Markup (SC)", "Scheme Fees (SC)", "Interchange (SC)", "Processing Fee Currency",
              "Processing Fee (FC)", "User Name", "Payment Method Variant", "Modification Merchant Reference",
              "Modification Psp Reference"]


def _par(psp: str, ref: str, booked: str, tz: str, record: str, amount: str, payable: str = "",
         fees: tuple[str, str, str, str] = ("", "", "", ""), currency: str = "EUR", mod: str = "") -> list[str]:
    return ["Acme", "AcmeEU", psp, ref, "visa", booked, tz, currency, amount, record, currency, "", "", "",
            currency, payable, *fees, "", "", "ws@Company.Acme", "visa", "", mod]


def test_payment_accounting_counts_each_payment_once(tmp_path: Path) -> None:
    day = "2026-07-01 10:00:00"
    rows = [
        _par("8815", "INV-1", day, "CEST", "Received", "100.00"),
        _par("8815", "INV-1", day, "CEST", "Authorised", "100.00"),
        _par("8815", "INV-1", "2026-07-01 12:00:00", "CEST", "SentForSettle", "100.00"),
        _par("8815", "INV-1", "2026-07-02 03:00:00", "CEST", "Settled", "100.00", "97.50",
             ("1.00", "0.50", "0.40", "0.60")),
        _par("8815", "INV-1", "2026-07-05 09:00:00", "CEST", "SentForRefund", "40.00", mod="9921"),
        _par("8815", "INV-1", "2026-07-06 09:00:00", "CEST", "Refunded", "40.00", "-40.00", mod="9921"),
        _par("7001", "INV-2", day, "CEST", "Refused", "20.00"),
        _par("7002", "INV-3", "2026-07-02 23:30:00", "PDT", "Chargeback", "55.00", "-57.00", ("2.00", "", "", ""),
             currency="USD"),
        _par("7003", "INV-4", day, "CET", "SomethingNew", "10.00"),
        _par("7004", "INV-5", day, "IST", "Settled", "10.00", "9.70"),
    ]
    txns, counts, quarantined = _ingest_csv(tmp_path, "adyen_payment_accounting", PAR_HEADER, rows)
    got = {(r["txn_id"], r["type"]): r for r in txns}
    assert [(c.read, c.accepted, c.quarantined) for c in counts] == [(6, 4, 2)]  # lifecycle steps left out
    assert sorted(got) == [("7001", "charge"), ("7002", "dispute"), ("8815", "charge"), ("9921", "refund")]
    charge = got[("8815", "charge")]
    assert (charge["status"], charge["gross"], charge["fee"], charge["net"], str(charge["created_at"])) == (
        "succeeded", 10000, 250, 9750, "2026-07-02 01:00:00+00:00")
    refund = got[("9921", "refund")]
    assert (refund["gross"], refund["net"], refund["charge_id"], refund["invoice_ref"]) == (-4000, -4000, "8815",
                                                                                            "INV-1")
    assert (got[("7001", "charge")]["status"], got[("7001", "charge")]["gross"]) == ("failed", 2000)
    dispute = got[("7002", "dispute")]
    assert (dispute["gross"], dispute["currency"], str(dispute["created_at"])) == (
        -5500, "USD", "2026-07-03 06:30:00+00:00")
    bad = sorted((q["line"], q["column_name"], q["value"]) for q in quarantined)
    assert bad == [(10, "type", "SomethingNew"), (11, "created_at", "2026-07-01 10:00:00 IST")]
