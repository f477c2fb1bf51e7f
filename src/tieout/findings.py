"""Findings: the record an analyst acts on (DESIGN §3). Builds them from check output (a small
result), gives each a stable fingerprint, a severity, its evidence and a one-sentence explanation.

The persistent store and lifecycle live in `store`; this room does not touch the database.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from typing import Any

import ibis
import ibis.expr.types as ir

from tieout.categories import category as category_entry
from tieout.config import SeverityConfig
from tieout.model import TABLES
from tieout.money import format_minor, is_known_currency, major_to_minor_threshold

SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class Evidence:
    table: str
    key: str
    source: str | None
    source_ref: str | None
    record: dict[str, Any]


@dataclass
class Finding:
    finding_id: str
    check: str
    category: str
    severity: str
    customer_id: str | None
    currency: str
    amount_at_risk: int
    expected: str | None
    actual: str | None
    explanation: str
    period: str | None
    subject: str
    evidence: list[Evidence] = field(default_factory=list)
    owner: str | None = None
    status: str = "open"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = [asdict(e) for e in self.evidence]
        return d


def fingerprint(check: str, category: str, subject: str, currency: str) -> str:
    """Identity of a discrepancy: the same check, category, record and currency next run is the
    same finding, whatever its amount or evidence became."""
    text = "\x1f".join((check, category, subject, currency))
    return "F" + hashlib.sha256(text.encode()).hexdigest()[:15]


def severity_of(amount_minor: int, currency: str, thresholds: SeverityConfig) -> str:
    if not is_known_currency(currency):
        return "high"
    if amount_minor >= major_to_minor_threshold(thresholds.high, currency):
        return "high"
    if amount_minor >= major_to_minor_threshold(thresholds.medium, currency):
        return "medium"
    return "low"


def _display(value: str | None, kind: str, currency: str) -> str | None:
    if value is None:
        return None
    if kind == "money" and is_known_currency(currency):
        try:
            return format_minor(int(Decimal(value)), currency)
        except (ArithmeticError, ValueError):
            return value
    return value


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def _key_expr(t: ir.Table, table_name: str) -> ir.StringValue:
    key = TABLES[table_name].ref_key
    expr = t[key[0]].cast("string")
    for k in key[1:]:
        expr = expr + "/" + t[k].cast("string")
    return expr


def resolve_evidence(tables: dict[str, ir.Table], refs: set[tuple[str, str]]) -> dict[tuple[str, str], Evidence]:
    """Fetch the full canonical record of every referenced row, one query per table."""
    by_table: dict[str, set[str]] = defaultdict(set)
    for table, key in refs:
        by_table[table].add(key)
    out: dict[tuple[str, str], Evidence] = {}
    for table, keys in by_table.items():
        if table not in tables:
            continue
        t = tables[table]
        k = _key_expr(t, table)
        # The keys as a table joined on, not an IN list: an IN list of thousands of literals costs
        # seconds to build and compile (Ibis and sqlglot), more than the query itself.
        wanted = ibis.memtable({"_wanted_key": sorted(keys)}, schema={"_wanted_key": "string"})
        rows = t.mutate(_key=k).semi_join(wanted, k == wanted._wanted_key).to_pyarrow().to_pylist()
        # Where records share a reference (a movement and its reversal), the first in source order speaks.
        rows.sort(key=lambda r: (r["_key"], str(r.get("source_ref") or "")), reverse=True)
        for row in rows:
            key = row.pop("_key")
            record = {c: _json_safe(v) for c, v in row.items() if c not in ("source", "source_ref")}
            out[(table, key)] = Evidence(table, key, row.get("source"), row.get("source_ref"), record)
    return out


def build_findings(
    check: str,
    rows: list[dict[str, Any]],
    explanations: dict[str, str],
    tables: dict[str, ir.Table],
    thresholds: SeverityConfig,
) -> list[Finding]:
    """Finding objects from a check's output rows, evidence resolved, explanation written."""
    wanted: set[tuple[str, str]] = set()
    parsed_refs: list[list[tuple[str, str]]] = []
    for r in rows:
        items = []
        for part in (r.get("evidence") or "").split(";"):
            if ":" in part:
                table, key = part.split(":", 1)
                items.append((table, key))
        parsed_refs.append(items)
        wanted.update(items)
    evidence = resolve_evidence(tables, wanted)
    findings = []
    for r, items in zip(rows, parsed_refs, strict=True):
        currency = r["currency"] or "?"
        kind = r["value_kind"]
        amount = int(r["amount_at_risk"] or 0)
        expected = _display(r["expected"], kind, currency)
        actual = _display(r["actual"], kind, currency)
        template = explanations.get(r["category"], category_entry(r["category"]).definition)
        explanation = template.format(
            subject=r["subject"], expected=expected, actual=actual, detail=r.get("detail") or "",
            amount=format_minor(amount, currency) if is_known_currency(currency) else str(amount),
            customer=r.get("customer_id") or "",
        )
        ev = [evidence.get(i) or Evidence(i[0], i[1], None, None, {}) for i in items]
        findings.append(Finding(
            finding_id=fingerprint(check, r["category"], r["subject"], currency),
            check=check,
            category=r["category"],
            severity=severity_of(amount, currency, thresholds),
            customer_id=r.get("customer_id"),
            currency=currency,
            amount_at_risk=amount,
            expected=expected,
            actual=actual,
            explanation=explanation,
            period=r.get("period"),
            subject=r["subject"],
            evidence=ev,
            owner=category_entry(r["category"]).team,
        ))
    return findings


def evidence_summary(items: list[dict[str, Any]]) -> str:
    """'table:key@source_ref; ...': a finding's evidence in one cell (exports, notebooks)."""
    return "; ".join(f"{e['table']}:{e['key']}@{e['source_ref']}" for e in items)


def evidence_json(evidence: list[Evidence]) -> str:
    # a shallow dict per record: `asdict` deep-copies every record, the store's largest Python cost
    return json.dumps([{f.name: getattr(e, f.name) for f in fields(e)} for e in evidence],
                      sort_keys=True, default=str)
