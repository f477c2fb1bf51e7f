"""Running one check or rule on the engine: its parameter variants (per-currency and per-segment
overrides), the shape of what it returns, and its failures. A custom rule that raises, returns the
wrong shape or fails on the engine becomes a `RuleError` naming the rule, its file and line; a
built-in check failing is a bug and keeps its `QueryError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import ibis
import ibis.expr.types as ir

from tieout.checks.registry import FINDING_COLUMNS, Check, CheckContext, CheckParams, Scope, check_variants
from tieout.config import Config
from tieout.errors import QueryError
from tieout.findings import Finding, build_findings
from tieout.rules.failures import RuleError, RuleFailure, first_line, line_in
from tieout.rules.ruleset import RuleSet

Variants = Sequence[tuple[Scope | None, CheckParams]]


def _scope_index(out: ir.Table, ctx: CheckContext, scopes: list[Scope]) -> ir.Table:
    """`out` with `_scope`: the index of the first override whose currency/segment the finding has, else -1."""
    if any(s.segment for s in scopes) and ctx.has("customers"):
        c = ctx.table("customers")
        seg = c.select(_seg_customer=c.customer_id, _segment=c.segment).distinct(on="_seg_customer", keep="first")
        out = out.left_join(seg, out.customer_id == seg._seg_customer).drop("_seg_customer")
    else:
        out = out.mutate(_segment=ibis.null("string"))
    branches = []
    for i, s in enumerate(scopes):
        cond = ibis.literal(True)
        if s.currency:
            cond = cond & (out.currency == s.currency)
        if s.segment:
            cond = cond & (out._segment == s.segment)
        branches.append((cond.fill_null(False), i))
    return out.mutate(_scope=ibis.cases(*branches, else_=-1))


def findings_expr(check: Check, ctx: CheckContext, variants: Variants) -> ir.Table:
    """The check's findings: each parameter variant keeps the findings in its scope."""
    base = variants[0][1]
    if len(variants) == 1:
        return check.run(ctx, base)
    scopes = [s for s, _ in variants[1:] if s is not None]
    parts = []
    for k, (_, params) in enumerate(variants):
        # A fresh context per variant: checks memoize intermediate results (matches) by name.
        vctx = ctx if k == 0 else replace(ctx, cache={})
        out = _scope_index(check.run(vctx, params), ctx, scopes)
        parts.append(out.filter(out._scope == k - 1).select(*FINDING_COLUMNS))
    return ibis.union(*parts, distinct=False)


def _fail(check: Check, message: str, line: int | None = None) -> RuleError:
    return RuleError(RuleFailure(check.name, check.origin, line if line is not None else (check.line or None),
                                 message))


def _shaped(check: Check, expr: Any) -> ir.Table:
    if not isinstance(expr, ir.Table):
        raise _fail(check, f"returned {type(expr).__name__}, not an Ibis table with the finding columns "
                    f"({', '.join(FINDING_COLUMNS)}; build it with findings_table)")
    missing = [c for c in FINDING_COLUMNS if c not in expr.columns]
    if missing:
        raise _fail(check, f"returned a table without the finding column(s) {', '.join(missing)} "
                    "(build it with tieout.checks.registry.findings_table)")
    try:
        return expr.select(*(expr[c].cast(t) for c, t in FINDING_COLUMNS.items()))
    except Exception as exc:
        raise _fail(check, f"returned finding columns of the wrong type: {first_line(exc)}") from exc


def evaluate(check: Check, ctx: CheckContext, variants: Variants) -> list[dict[str, Any]]:
    """Run `check` and return its finding rows (small: findings, not records)."""
    custom = check.kind != "builtin"
    try:
        expr = findings_expr(check, ctx, variants)
    except Exception as exc:
        if not custom or isinstance(exc, RuleError):
            raise
        raise _fail(check, f"raised {first_line(exc)}", line_in(exc, check.origin, None)) from exc
    if custom:
        expr = _shaped(check, expr)
    try:
        rows: list[dict[str, Any]] = expr.to_pyarrow().to_pylist()
    except Exception as exc:
        if custom:
            raise _fail(check, f"failed on the engine: {first_line(exc)}") from exc
        raise QueryError(f"check '{check.name}'", exc, _sql(expr)) from exc
    if custom:
        bad = sorted({str(r["category"]) for r in rows} - set(check.categories))
        if bad:
            raise _fail(check, f"raised category '{bad[0]}', which it does not declare "
                        f"(declared: {', '.join(check.categories)})")
        if any(r["subject"] is None or r["currency"] is None or r["amount_at_risk"] is None for r in rows):
            raise _fail(check, "returned a finding without subject, currency or amount_at_risk")
    return rows


def _sql(expr: ir.Table) -> str | None:
    try:
        return str(ibis.to_sql(expr))
    except Exception:
        return None


@dataclass
class ChecksOutcome:
    """What the checks step of a run produced."""

    findings: list[Finding] = field(default_factory=list)  # active rules only: stored and routed
    ran: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, RuleFailure] = field(default_factory=dict)
    shadow: dict[str, list[Finding]] = field(default_factory=dict)  # shadow rules: compared, never stored
    timings: dict[str, float] = field(default_factory=dict)


def run_checks(cfg: Config, rules: RuleSet, ctx: CheckContext, shadow: Iterable[str] = (),
               progress: Callable[[str], None] = lambda _msg: None) -> ChecksOutcome:
    """Run every enabled check and rule of `rules`; a failing custom rule is recorded, not raised."""
    out = ChecksOutcome(failed={f.rule: f for f in rules.failures})
    shadow = set(shadow)
    for name, check in rules.checks.items():
        variants = check_variants(cfg, name, check)
        params = variants[0][1]
        mode = rules.mode(cfg, name, params, shadow)
        if not params.enabled and name not in shadow:
            out.skipped[name] = "disabled in config"
            continue
        missing = [t for t in check.tables if t not in ctx.tables]
        if missing:
            out.skipped[name] = f"no source for {', '.join(missing)}"
            continue
        if check.needs_catalog and ctx.billing is None:
            out.skipped[name] = "no billing catalog (`billing:` products in tieout.yaml)"
            continue
        progress(f"check: {name}" + (" (shadow)" if mode == "shadow" else ""))
        t1 = time.perf_counter()
        try:
            rows = evaluate(check, ctx, variants)
        except RuleError as exc:
            out.failed[name] = exc.failure
            continue
        found = build_findings(name, rows, check.explanations, ctx.tables, cfg.severity)
        if check.severity:
            for f in found:
                f.severity = check.severity
        out.timings[f"check:{name}"] = time.perf_counter() - t1
        if mode == "shadow":
            out.shadow[name] = found
        else:
            out.findings.extend(found)
            out.ran.append(name)
    out.findings.sort(key=lambda f: (-f.amount_at_risk, f.finding_id))
    return out
