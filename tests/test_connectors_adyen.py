"""Adyen settlement details report: time zone abbreviations, signed debits/credits, quarantine."""

from __future__ import annotations

import csv
from pathlib import Path

from tieout.config import parse_config
from tieout.engines import create_engine
from tieout.pipeline import ingest

HEADER = ["Company Account", "Merchant Account", "Psp Reference", "Merchant Reference", "Payment Method",
          "Creation Date", "TimeZone", "Type", "Modification Reference", "Gross Currency", "Gross Debit (GC)",
          "Gross Credit (GC)", "Exchange Rate", "Net Currency", "Net Debit (NC)", "Net Credit (NC)",
          "Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)", "Payment Method Variant",
          "Batch Number"]


def _row(psp: str, ref: str, created: str, tz: str, kind: str, mod: str, debit: str, credit: str,
         net_debit: str, net_credit: str, fees: tuple[str, str, str, str], currency: str = "EUR") -> list[str]:
    return ["Acme", "AcmeEU", psp, ref, "visa", created, tz, kind, mod, currency, debit, credit, "1", currency,
            net_debit, net_credit, *fees, "visa", "42"]


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
    with (tmp_path / "settlement.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([HEADER, *rows])
    cfg = parse_config("sources:\n  - {name: adyen, format: adyen_settlement, path: settlement.csv}\n",
                       tmp_path / "tieout.yaml")
    engine = create_engine("duckdb")
    try:
        tables, counts, quarantined, _ = ingest(cfg, engine, lambda _m: None)
        got = {r["txn_id"]: r for r in tables["gateway_transactions"].to_pyarrow().to_pylist()}
    finally:
        engine.close()
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
    assert all(q["file"] == "settlement.csv" for q in quarantined)
