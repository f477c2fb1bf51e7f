"""The check registry: each check declared once with its name, doc, parameter model, categories,
input tables and function. The CLI, the config validation, the docs and the tests read it.

A check is an Ibis function: it receives the canonical tables (`CheckContext`) and its validated
parameters and returns an Ibis table with `FINDING_COLUMNS`, one row per discrepancy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tieout.config import Config
from tieout.engines.base import Engine
from tieout.errors import ConfigError

FINDING_COLUMNS: dict[str, dt.DataType] = {
    "category": dt.string,
    "subject": dt.string,  # the record the finding is about; with check+category, its identity
    "customer_id": dt.string,
    "currency": dt.string,
    "amount_at_risk": dt.int64,
    "expected": dt.string,
    "actual": dt.string,
    "value_kind": dt.string,  # money | quantity | text: how `expected`/`actual` read
    "period": dt.string,  # YYYY-MM (UTC) of the subject record
    "evidence": dt.string,  # 'table:key;table:key', resolved to full records by `findings`
    "detail": dt.string,  # words for the explanation
}


class CheckParams(BaseModel):
    """Base of every check's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="Run this check; false skips it (the run says so).")


@dataclass
class CheckContext:
    """What a check can see: the accepted canonical tables, the engine and the run's settings."""

    engine: Engine
    tables: dict[str, ir.Table]
    as_of: date
    home_currency: str
    cache: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str) -> ir.Table:
        return self.tables[name]

    def has(self, *names: str) -> bool:
        return all(n in self.tables for n in names)

    def memo(self, key: str, build: Callable[[], Any]) -> Any:
        """Compute shared intermediate results (e.g. a match) once per run."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]


P = TypeVar("P", bound=CheckParams)
CheckFn = Callable[[CheckContext, Any], ir.Table]


@dataclass(frozen=True)
class Check:
    name: str
    doc: str
    params: type[CheckParams]
    categories: tuple[str, ...]
    tables: tuple[str, ...]  # canonical tables it needs
    run: CheckFn
    explanations: dict[str, str]  # category -> template for the one-sentence explanation


CHECKS: dict[str, Check] = {}


def register_check(
    name: str,
    *,
    params: type[CheckParams],
    categories: tuple[str, ...],
    tables: tuple[str, ...],
    explanations: dict[str, str],
) -> Callable[[CheckFn], CheckFn]:
    def deco(fn: CheckFn) -> CheckFn:
        if name in CHECKS:
            raise ValueError(f"check '{name}' registered twice")
        missing = set(categories) - set(explanations)
        if missing:
            raise ValueError(f"check '{name}' has no explanation for {sorted(missing)}")
        CHECKS[name] = Check(name, (fn.__doc__ or "").strip(), params, categories, tables, fn, explanations)
        return fn

    return deco


def check_params(cfg: Config, name: str) -> CheckParams:
    """The validated parameters of check `name`, with errors naming the YAML line."""
    check = CHECKS[name]
    raw = cfg.checks.get(name, {}) or {}
    try:
        return check.params.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ("checks", name, *first["loc"])
        key = ".".join(str(p) for p in loc)
        msg = "unknown parameter" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(f"{cfg.where(loc)}: {key}: {msg}") from None


def validate_check_names(cfg: Config) -> None:
    for name in cfg.checks:
        if name not in CHECKS:
            raise ConfigError(
                f"{cfg.where(('checks', name))}: checks.{name}: unknown check "
                f"(known: {', '.join(sorted(CHECKS))})"
            )


def findings_table(
    t: ir.Table,
    *,
    category: str | ir.StringValue,
    subject: ir.Value,
    customer_id: ir.Value,
    currency: ir.Value,
    amount_at_risk: ir.Value,
    expected: ir.Value | None,
    actual: ir.Value | None,
    value_kind: str,
    period: ir.Value,
    evidence: ir.Value,
    detail: ir.Value | str = "",
) -> ir.Table:
    """Shape any table into `FINDING_COLUMNS` (typed, so results of all checks union cleanly)."""
    null = ibis.null(dt.string)
    values: dict[str, Any] = {
        "category": ibis.literal(category) if isinstance(category, str) else category,
        "subject": subject,
        "customer_id": customer_id,
        "currency": currency,
        "amount_at_risk": amount_at_risk.abs(),
        "expected": null if expected is None else expected,
        "actual": null if actual is None else actual,
        "value_kind": ibis.literal(value_kind),
        "period": period,
        "evidence": evidence,
        "detail": ibis.literal(detail) if isinstance(detail, str) else detail,
    }
    return t.select(**{k: ibis.literal(v).cast(FINDING_COLUMNS[k]) if not isinstance(v, ir.Value)
                       else v.cast(FINDING_COLUMNS[k]) for k, v in values.items()})


def month_of(value: ir.Value) -> ir.StringValue:
    """'YYYY-MM' of a date or UTC timestamp."""
    return value.strftime("%Y-%m")


def ref(table: str, key: ir.Value) -> ir.StringValue:
    """An evidence reference 'table:key'."""
    return ibis.literal(table + ":") + key.cast(dt.string)


def refs(*parts: ir.StringValue) -> ir.StringValue:
    """Join evidence references, skipping nulls."""
    out = parts[0].fill_null("")
    for p in parts[1:]:
        out = ibis.ifelse(p.isnull(), out, ibis.ifelse(out == "", p, out + ";" + p))
    return out


def ref_list(table: str, keys: ir.StringValue, sep: str = ";") -> ir.StringValue:
    """Evidence references for a `sep`-joined list of keys (e.g. from group_concat)."""
    return ibis.literal(table + ":") + keys.re_replace(sep, ";" + table + ":")
