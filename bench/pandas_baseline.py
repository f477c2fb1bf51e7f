"""The core of tieout's `gateway_billing` check written "the obvious way", for comparison.

Three implementations of the same work on a workspace's CSVs (bench/data/<scale>/data/):

* `pandas`  — read the CSVs with pandas, parse money (major -> integer minor units, JPY has no
  decimals) and timestamps, map Stripe reporting categories, then: exact merge of settled charges
  on gateway ref, composite fallback merge on customer + currency + amount within a ±3-day window
  with mutual-best one-to-one rounds (the same rule tieout uses), unmatched charges, amount and
  currency mismatches, card payments the gateway never settled, paid invoices short of payments,
  refunds and lost disputes not reflected (each paired exact + composite too), failed payments not
  retried, duplicate payments. A plain, fair implementation: vectorised merges/groupbys, no
  Python row loops, nothing deliberately slow.
* `polars`  — the same logic, eager Polars (multi-threaded).
* `floor`   — bare DuckDB SQL of just the exact + composite charge/payment joins (read, parse,
  exact join, composite candidates, one mutual-best round): the least any engine must do.

No quality gate, no findings store, no billing_subscriptions or gl_cash: this is strictly less
work than a tieout run. Prints one JSON line: {"impl", "findings", "by_category", "seconds"}.

    python bench/pandas_baseline.py bench/data/1M --impl pandas
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

WINDOW_S = 3 * 86400
RETRY_S = 7 * 86400
AS_OF = "2026-09-30"
CATEGORIES = {"charge": "charge", "payment": "charge", "refund": "refund", "payment_refund": "refund",
              "dispute": "dispute", "dispute_reversal": "dispute_reversal",
              "refund_failure": "refund_reversal"}  # a refund the gateway reversed (Stripe refund_failure)


# ---------------------------------------------------------------------------------------------- pandas
def run_pandas(ws: Path) -> dict[str, int]:
    import numpy as np
    import pandas as pd

    d = ws / "data"

    def minor(amount: pd.Series, currency: pd.Series) -> pd.Series:
        scale = np.where(currency.str.upper() == "JPY", 1, 100)
        return (pd.to_numeric(amount) * scale).round().astype("int64")

    cust = pd.read_csv(d / "customers.csv", usecols=["customer_id", "gateway_customer_id"], dtype=str)
    bal = pd.read_csv(d / "stripe_balance_itemized.csv", dtype=str, usecols=[
        "created_utc", "currency", "gross", "reporting_category", "source_id", "customer_id", "charge_id",
        "payment_metadata[invoice_number]"])
    bal = pd.DataFrame({
        "txn_id": bal.source_id, "type": bal.reporting_category.map(CATEGORIES), "status": "succeeded",
        "charge_id": bal.charge_id, "gw_customer": bal.customer_id, "currency": bal.currency.str.upper(),
        "gross": minor(bal.gross, bal.currency),
        "created_at": pd.to_datetime(bal.created_utc, format="%Y-%m-%d %H:%M:%S"),
        "invoice_ref": bal["payment_metadata[invoice_number]"]})
    fail = pd.read_csv(d / "stripe_payments_failed.csv", dtype=str, usecols=[
        "id", "Created (UTC)", "Amount", "Currency", "Status", "Customer ID", "invoice_number (metadata)"])
    fail = pd.DataFrame({
        "txn_id": fail["id"], "type": "charge",
        "status": fail.Status.str.lower().map({"failed": "failed", "paid": "succeeded", "succeeded": "succeeded"}),
        "charge_id": fail["id"], "gw_customer": fail["Customer ID"], "currency": fail.Currency.str.upper(),
        "gross": minor(fail.Amount, fail.Currency),
        "created_at": pd.to_datetime(fail["Created (UTC)"], format="%Y-%m-%d %H:%M"),
        "invoice_ref": fail["invoice_number (metadata)"]})
    gt = pd.concat([bal, fail], ignore_index=True)
    cmap = cust.dropna().drop_duplicates("gateway_customer_id").rename(
        columns={"gateway_customer_id": "gw_customer", "customer_id": "billing_customer"})
    gt = gt.merge(cmap, on="gw_customer", how="left")
    gt["billing_customer"] = gt.billing_customer.fillna(gt.gw_customer)

    pay = pd.read_csv(d / "payments.csv", dtype=str)
    pay["amount"] = minor(pay.amount, pay.currency)
    pay["received_at"] = pd.to_datetime(pay.received_at, format="%Y-%m-%d %H:%M:%S")
    inv = pd.read_csv(d / "invoices.csv", dtype=str, usecols=[
        "Invoice.InvoiceNumber", "Account.AccountNumber", "Invoice.Status", "Invoice.Currency", "Invoice.Amount",
        "Invoice.Balance"])
    inv = pd.DataFrame({"invoice_id": inv["Invoice.InvoiceNumber"], "customer_id": inv["Account.AccountNumber"],
                        "status": inv["Invoice.Status"].str.lower(), "currency": inv["Invoice.Currency"],
                        "total": minor(inv["Invoice.Amount"], inv["Invoice.Currency"]),
                        "balance": minor(inv["Invoice.Balance"], inv["Invoice.Currency"])})

    def match(moves: pd.DataFrame, recorded: pd.DataFrame) -> pd.DataFrame:
        """Exact on txn_id == gateway_ref, then composite customer + currency + |amount| ± 3 days,
        one-to-one by mutual-best rounds. Returns pairs (txn_id, payment_id)."""
        exact = moves[["txn_id"]].merge(recorded[["payment_id", "gateway_ref"]], left_on="txn_id",
                                        right_on="gateway_ref")[["txn_id", "payment_id"]]
        lm = moves[~moves.txn_id.isin(exact.txn_id)]
        rm = recorded[~recorded.payment_id.isin(exact.payment_id)]
        lm = lm.assign(abs_amount=lm.gross.abs())[["txn_id", "billing_customer", "currency", "abs_amount",
                                                   "created_at"]]
        rm = rm.assign(abs_amount=rm.amount.abs())[["payment_id", "customer_id", "currency", "abs_amount",
                                                    "received_at"]]
        cand = lm.merge(rm, left_on=["billing_customer", "currency", "abs_amount"],
                        right_on=["customer_id", "currency", "abs_amount"])
        cand["secs"] = (cand.created_at - cand.received_at).abs().dt.total_seconds().astype("int64")
        cand = cand.loc[cand.secs <= WINDOW_S, ["txn_id", "payment_id", "secs"]]
        taken = []
        for _ in range(12):
            if cand.empty:
                break
            best_l = cand.sort_values(["txn_id", "secs", "payment_id"]).drop_duplicates("txn_id")
            best_r = cand.sort_values(["payment_id", "secs", "txn_id"]).drop_duplicates("payment_id")
            mutual = best_l.merge(best_r[["txn_id", "payment_id"]], on=["txn_id", "payment_id"])
            taken.append(mutual[["txn_id", "payment_id"]])
            cand = cand[~cand.txn_id.isin(mutual.txn_id) & ~cand.payment_id.isin(mutual.payment_id)]
        return pd.concat([exact, *taken], ignore_index=True)

    ok = gt[gt.status == "succeeded"]
    charges = ok[ok.type == "charge"]
    card = pay[(pay.type == "payment") & (pay.method == "card")]
    pairs = match(charges, card)
    out: dict[str, int] = {}

    # duplicate_payment: settled per invoice net of refunds/disputes, more than one charge, > total.
    ch = charges.merge(pairs, on="txn_id", how="left").merge(
        pay[["payment_id", "invoice_id"]].rename(columns={"invoice_id": "pinv"}), on="payment_id", how="left")
    ch["inv_key"] = ch.invoice_ref.fillna(ch.pinv)
    reversal = ok.type.isin(["refund", "refund_reversal", "dispute", "dispute_reversal"])
    rev = ok[reversal].groupby("charge_id").gross.sum()
    ch["kept"] = ch.gross + ch.txn_id.map(rev).fillna(0).astype("int64")
    per_inv = ch.dropna(subset=["inv_key"]).groupby("inv_key").agg(settled=("kept", "sum"), n=("txn_id", "size"))
    dup = per_inv.join(inv[inv.status != "void"].set_index("invoice_id"), how="inner")
    dup = dup[(dup.n > 1) & (dup.settled > dup.total)]
    out["duplicate_payment"] = len(dup)
    unmatched = ch[ch.payment_id.isna() & ~ch.inv_key.isin(dup.index)]
    out["payment_unmatched"] = len(unmatched)

    matched = pairs.merge(charges[["txn_id", "gross", "currency"]], on="txn_id").merge(
        pay[["payment_id", "amount", "currency"]], on="payment_id", suffixes=("", "_pay"))
    out["currency_mismatch"] = int((matched.currency != matched.currency_pay).sum())
    out["amount_mismatch"] = int(((matched.currency == matched.currency_pay)
                                  & (matched.gross.abs() != matched.amount.abs())).sum())

    ghost = card[~card.payment_id.isin(pairs.payment_id)]
    recorded = pay[pay.type == "payment"].groupby("invoice_id").amount.sum()
    paid = inv[inv.status == "paid"]
    short = paid[paid.invoice_id.map(recorded).fillna(0) < paid.total]
    out["paid_without_payment"] = len(ghost) + len(short)

    refunds = ok[(ok.type == "refund") & ~ok.txn_id.isin(gt[gt.type == "refund_reversal"].txn_id)]
    rpairs = match(refunds, pay[pay.type == "refund"])
    out["refund_not_reflected"] = int((~refunds.txn_id.isin(rpairs.txn_id)).sum())
    won = gt[gt.type == "dispute_reversal"].charge_id.unique()
    disputes = ok[ok.type == "dispute"]
    lost = disputes[~disputes.charge_id.isin(won)]
    dpairs = match(disputes, pay[pay.type.isin(["chargeback", "refund"])])
    out["chargeback_not_reflected"] = int((~lost.txn_id.isin(dpairs.txn_id)).sum())

    failed = gt[(gt.status == "failed") & (gt.type == "charge") & gt.invoice_ref.notna()]
    last_fail = failed.groupby("invoice_ref").created_at.max().rename("failed_at").reset_index()
    later = last_fail.merge(charges[charges.invoice_ref.notna()][["invoice_ref", "created_at"]], on="invoice_ref")
    retried = later[later.created_at > later.failed_at].invoice_ref.unique()
    stuck = last_fail[~last_fail.invoice_ref.isin(retried)
                      & (last_fail.failed_at <= pd.Timestamp(AS_OF) - pd.Timedelta(seconds=RETRY_S))]
    stuck = stuck.merge(inv, left_on="invoice_ref", right_on="invoice_id")
    stuck = stuck[stuck.status.isin(["open", "uncollectible"]) & (stuck.total > 0)]
    out["failed_payment_not_retried"] = len(stuck)
    return out


# ---------------------------------------------------------------------------------------------- polars
def run_polars(ws: Path) -> dict[str, int]:
    import polars as pl

    d = ws / "data"

    def minor(amount: str, currency: str) -> pl.Expr:
        scale = pl.when(pl.col(currency).str.to_uppercase() == "JPY").then(1).otherwise(100)
        return (pl.col(amount).cast(pl.Float64) * scale).round().cast(pl.Int64)

    def read(name: str, cols: list[str] | None = None) -> pl.DataFrame:
        return pl.read_csv(d / name, infer_schema=False, columns=cols)

    cust = read("customers.csv", ["customer_id", "gateway_customer_id"])
    bal = read("stripe_balance_itemized.csv", ["created_utc", "currency", "gross", "reporting_category",
                                               "source_id", "customer_id", "charge_id",
                                               "payment_metadata[invoice_number]"]).select(
        txn_id=pl.col("source_id"), type=pl.col("reporting_category").replace_strict(CATEGORIES, default=None),
        status=pl.lit("succeeded"), charge_id=pl.col("charge_id"), gw_customer=pl.col("customer_id"),
        currency=pl.col("currency").str.to_uppercase(), gross=minor("gross", "currency"),
        created_at=pl.col("created_utc").str.strptime(pl.Datetime, "%Y-%m-%d %H:%M:%S"),
        invoice_ref=pl.col("payment_metadata[invoice_number]"))
    fail = read("stripe_payments_failed.csv", ["id", "Created (UTC)", "Amount", "Currency", "Status", "Customer ID",
                                               "invoice_number (metadata)"]).select(
        txn_id=pl.col("id"), type=pl.lit("charge"),
        status=pl.col("Status").str.to_lowercase().replace_strict(
            {"failed": "failed", "paid": "succeeded", "succeeded": "succeeded"}, default=None),
        charge_id=pl.col("id"), gw_customer=pl.col("Customer ID"), currency=pl.col("Currency").str.to_uppercase(),
        gross=minor("Amount", "Currency"),
        created_at=pl.col("Created (UTC)").str.strptime(pl.Datetime, "%Y-%m-%d %H:%M"),
        invoice_ref=pl.col("invoice_number (metadata)"))
    cmap = cust.drop_nulls().unique("gateway_customer_id", keep="first").rename(
        {"gateway_customer_id": "gw_customer", "customer_id": "billing_customer"})
    gt = pl.concat([bal, fail]).join(cmap, on="gw_customer", how="left").with_columns(
        billing_customer=pl.coalesce("billing_customer", "gw_customer"))
    pay = read("payments.csv").with_columns(
        amount=minor("amount", "currency"),
        received_at=pl.col("received_at").str.strptime(pl.Datetime, "%Y-%m-%d %H:%M:%S"))
    inv = read("invoices.csv", ["Invoice.InvoiceNumber", "Account.AccountNumber", "Invoice.Status",
                                "Invoice.Currency", "Invoice.Amount"]).select(
        invoice_id=pl.col("Invoice.InvoiceNumber"), customer_id=pl.col("Account.AccountNumber"),
        status=pl.col("Invoice.Status").str.to_lowercase(), total=minor("Invoice.Amount", "Invoice.Currency"))

    def match(moves: pl.DataFrame, recorded: pl.DataFrame) -> pl.DataFrame:
        exact = moves.select("txn_id").join(recorded.select("payment_id", "gateway_ref"), left_on="txn_id",
                                            right_on="gateway_ref").select("txn_id", "payment_id")
        lm = moves.join(exact, on="txn_id", how="anti").select(
            "txn_id", "billing_customer", "currency", "created_at", abs_amount=pl.col("gross").abs())
        rm = recorded.join(exact, on="payment_id", how="anti").select(
            "payment_id", "customer_id", "currency", "received_at", abs_amount=pl.col("amount").abs())
        cand = lm.join(rm, left_on=["billing_customer", "currency", "abs_amount"],
                       right_on=["customer_id", "currency", "abs_amount"]).select(
            "txn_id", "payment_id", secs=(pl.col("created_at") - pl.col("received_at")).abs().dt.total_seconds())
        cand = cand.filter(pl.col("secs") <= WINDOW_S)
        taken = [exact]
        for _ in range(12):
            if cand.height == 0:
                break
            best_l = cand.sort("txn_id", "secs", "payment_id").unique("txn_id", keep="first")
            best_r = cand.sort("payment_id", "secs", "txn_id").unique("payment_id", keep="first")
            mutual = best_l.join(best_r.select("txn_id", "payment_id"), on=["txn_id", "payment_id"]).select(
                "txn_id", "payment_id")
            taken.append(mutual)
            cand = cand.join(mutual, on="txn_id", how="anti").join(mutual, on="payment_id", how="anti")
        return pl.concat(taken)

    ok = gt.filter(pl.col("status") == "succeeded")
    charges = ok.filter(pl.col("type") == "charge")
    card = pay.filter((pl.col("type") == "payment") & (pl.col("method") == "card"))
    pairs = match(charges, card)
    out: dict[str, int] = {}

    rev = ok.filter(pl.col("type").is_in(["refund", "refund_reversal", "dispute", "dispute_reversal"])).group_by(
        "charge_id").agg(
        reversed=pl.col("gross").sum())
    ch = (charges.join(pairs, on="txn_id", how="left")
          .join(pay.select("payment_id", pinv="invoice_id"), on="payment_id", how="left")
          .join(rev, left_on="txn_id", right_on="charge_id", how="left")
          .with_columns(inv_key=pl.coalesce("invoice_ref", "pinv"),
                        kept=pl.col("gross") + pl.col("reversed").fill_null(0)))
    per_inv = ch.filter(pl.col("inv_key").is_not_null()).group_by("inv_key").agg(
        settled=pl.col("kept").sum(), n=pl.len())
    dup = per_inv.join(inv.filter(pl.col("status") != "void"), left_on="inv_key", right_on="invoice_id").filter(
        (pl.col("n") > 1) & (pl.col("settled") > pl.col("total")))
    out["duplicate_payment"] = dup.height
    out["payment_unmatched"] = ch.filter(pl.col("payment_id").is_null()).join(
        dup.select("inv_key"), on="inv_key", how="anti").height
    matched = pairs.join(charges.select("txn_id", "gross", "currency"), on="txn_id").join(
        pay.select("payment_id", "amount", currency_pay="currency"), on="payment_id")
    out["currency_mismatch"] = matched.filter(pl.col("currency") != pl.col("currency_pay")).height
    out["amount_mismatch"] = matched.filter((pl.col("currency") == pl.col("currency_pay"))
                                            & (pl.col("gross").abs() != pl.col("amount").abs())).height
    ghost = card.join(pairs, on="payment_id", how="anti").height
    recorded = pay.filter(pl.col("type") == "payment").group_by("invoice_id").agg(recorded=pl.col("amount").sum())
    short = inv.filter(pl.col("status") == "paid").join(recorded, on="invoice_id", how="left").filter(
        pl.col("recorded").fill_null(0) < pl.col("total")).height
    out["paid_without_payment"] = ghost + short
    refunds = ok.filter(pl.col("type") == "refund").join(
        gt.filter(pl.col("type") == "refund_reversal").select("txn_id"), on="txn_id", how="anti")
    rpairs = match(refunds, pay.filter(pl.col("type") == "refund"))
    out["refund_not_reflected"] = refunds.join(rpairs, on="txn_id", how="anti").height
    won = gt.filter(pl.col("type") == "dispute_reversal").select("charge_id").unique()
    disputes = ok.filter(pl.col("type") == "dispute")
    lost = disputes.join(won, on="charge_id", how="anti")
    dpairs = match(disputes, pay.filter(pl.col("type").is_in(["chargeback", "refund"])))
    out["chargeback_not_reflected"] = lost.join(dpairs, on="txn_id", how="anti").height
    failed = gt.filter((pl.col("status") == "failed") & (pl.col("type") == "charge")
                       & pl.col("invoice_ref").is_not_null())
    last_fail = failed.group_by("invoice_ref").agg(failed_at=pl.col("created_at").max())
    retried = last_fail.join(charges.filter(pl.col("invoice_ref").is_not_null()).select("invoice_ref", "created_at"),
                             on="invoice_ref").filter(pl.col("created_at") > pl.col("failed_at")).select(
        "invoice_ref").unique()
    from datetime import datetime, timedelta
    cutoff = datetime.fromisoformat(AS_OF) - timedelta(seconds=RETRY_S)
    stuck = last_fail.join(retried, on="invoice_ref", how="anti").filter(pl.col("failed_at") <= cutoff).join(
        inv, left_on="invoice_ref", right_on="invoice_id").filter(
        pl.col("status").is_in(["open", "uncollectible"]) & (pl.col("total") > 0))
    out["failed_payment_not_retried"] = stuck.height
    return out


# ---------------------------------------------------------------------------------------------- floor
FLOOR_SQL = """
CREATE TEMP TABLE cust AS SELECT customer_id, gateway_customer_id
  FROM read_csv('{d}/customers.csv', header=true, all_varchar=true);
CREATE TEMP TABLE charges AS
  SELECT b.source_id AS txn_id, coalesce(c.customer_id, b.customer_id) AS cust, upper(b.currency) AS cur,
         CAST(round(CAST(b.gross AS DOUBLE) * CASE WHEN upper(b.currency) = 'JPY' THEN 1 ELSE 100 END) AS BIGINT)
           AS amt,
         CAST(b.created_utc AS TIMESTAMP) AS ts
  FROM read_csv('{d}/stripe_balance_itemized.csv', header=true, all_varchar=true) b
  LEFT JOIN cust c ON c.gateway_customer_id = b.customer_id
  WHERE b.reporting_category IN ('charge', 'payment');
CREATE TEMP TABLE pays AS
  SELECT payment_id, customer_id AS cust, currency AS cur, gateway_ref,
         CAST(round(CAST(amount AS DOUBLE) * CASE WHEN currency = 'JPY' THEN 1 ELSE 100 END) AS BIGINT) AS amt,
         CAST(received_at AS TIMESTAMP) AS ts
  FROM read_csv('{d}/payments.csv', header=true, all_varchar=true)
  WHERE type = 'payment' AND method = 'card';
CREATE TEMP TABLE exact AS
  SELECT c.txn_id, p.payment_id FROM charges c JOIN pays p ON p.gateway_ref = c.txn_id;
CREATE TEMP TABLE cand AS
  SELECT c.txn_id, p.payment_id, abs(epoch(c.ts) - epoch(p.ts)) AS secs
  FROM (SELECT * FROM charges ANTI JOIN exact USING (txn_id)) c
  JOIN (SELECT * FROM pays ANTI JOIN exact USING (payment_id)) p
    ON c.cust = p.cust AND c.cur = p.cur AND c.amt = p.amt AND abs(epoch(c.ts) - epoch(p.ts)) <= {w};
CREATE TEMP TABLE comp AS
  SELECT txn_id, payment_id FROM (
    SELECT *, row_number() OVER (PARTITION BY txn_id ORDER BY secs, payment_id) AS rl,
              row_number() OVER (PARTITION BY payment_id ORDER BY secs, txn_id) AS rr FROM cand)
  WHERE rl = 1 AND rr = 1;
"""


def run_floor(ws: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(FLOOR_SQL.format(d=ws / "data", w=WINDOW_S))
    n = con.execute("""SELECT (SELECT count(*) FROM charges) - (SELECT count(*) FROM exact)
                              - (SELECT count(*) FROM comp)""").fetchone()[0]
    return {"unpaired_charges": int(n),
            "exact_pairs": con.execute("SELECT count(*) FROM exact").fetchone()[0],
            "composite_pairs": con.execute("SELECT count(*) FROM comp").fetchone()[0]}


IMPLS = {"pandas": run_pandas, "polars": run_polars, "floor": run_floor}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--impl", choices=sorted(IMPLS), default="pandas")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    by_cat = IMPLS[a.impl](a.workspace)
    secs = time.perf_counter() - t0
    findings = sum(by_cat.values()) if a.impl != "floor" else by_cat["unpaired_charges"]
    print(json.dumps({"impl": a.impl, "findings": findings, "by_category": by_cat, "seconds": round(secs, 3)}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
