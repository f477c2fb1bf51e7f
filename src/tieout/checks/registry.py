"""The check registry: each check declared once with its name, doc, parameter model, categories,
input tables and function. The CLI, the config validation, the docs and the tests read it.

A check is an Ibis function: it receives the canonical tables (`CheckContext`) and its validated
parameters and returns an Ibis table with `FINDING_COLUMNS`, one row per discrepancy.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tieout.billing.catalog import BillingConfig
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
    mode: Literal["active", "shadow"] = Field(
        "active", description="shadow: run on production data without storing or routing findings; the run "
        "shows new, gone and changed findings against the active version.")
    overrides: list[dict[str, Any]] = Field(
        default_factory=list, description="Parameters for findings of one currency and/or customer segment: "
        "each item has `currency:` and/or `segment:` plus the parameters it changes; the first match wins.")


@dataclass
class CheckContext:
    """What a check can see: the accepted canonical tables, the engine and the run's settings."""

    engine: Engine
    tables: dict[str, ir.Table]
    as_of: date
    home_currency: str
    cache: dict[str, Any] = field(default_factory=dict)
    billing: BillingConfig | None = None  # the workspace's billing catalog (`billing:`), when it has products

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


RuleKind = Literal["builtin", "python", "sql"]


@dataclass(frozen=True)
class Check:
    name: str
    doc: str
    params: type[CheckParams]
    categories: tuple[str, ...]
    tables: tuple[str, ...]  # canonical tables it needs
    run: CheckFn
    explanations: dict[str, str]  # category -> template for the one-sentence explanation
    kind: RuleKind = "builtin"
    module: str = ""  # Python module that registered it ('' for SQL rules)
    origin: str = ""  # file that defines it
    line: int = 0  # line of the definition in `origin`
    version: str = ""  # content hash of the definition, recorded with each run
    severity: str | None = None  # fixed severity (custom rules); None: from money at risk
    mode: str = "active"  # the rule's own mode; `checks.<name>.mode` and `run --shadow` override it
    needs_catalog: bool = False  # runs only with a billing catalog (`billing:` products); else skipped

    @property
    def cases_file(self) -> Path:
        """The YAML test cases beside the definition: `<name>.cases.yaml`."""
        return Path(self.origin).with_name(f"{self.name}.cases.yaml")

    @property
    def where(self) -> str:
        return f"{self.origin}:{self.line}" if self.line else self.origin


CHECKS: dict[str, Check] = {}


def content_version(text: str | bytes) -> str:
    """A rule's version: the first 12 hex digits of the SHA-256 of its definition."""
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:12]


def _definition(fn: CheckFn) -> tuple[str, int, str]:
    """(file, line, version) of a check function; the version hashes its module's source."""
    try:
        origin = inspect.getsourcefile(fn) or ""
    except TypeError:
        origin = ""
    line = fn.__code__.co_firstlineno if hasattr(fn, "__code__") else 0
    try:
        version = content_version(Path(origin).read_bytes()) if origin else ""
    except OSError:
        version = ""
    return origin, line, version


def register_check(
    name: str,
    *,
    params: type[CheckParams],
    categories: tuple[str, ...],
    tables: tuple[str, ...],
    explanations: dict[str, str],
    needs_catalog: bool = False,
) -> Callable[[CheckFn], CheckFn]:
    def deco(fn: CheckFn) -> CheckFn:
        origin, line, version = _definition(fn)
        known = CHECKS.get(name)
        # A rule module loaded again after an edit replaces its own checks; another file may not.
        if known is not None and known.origin != origin:
            raise ValueError(f"check '{name}' registered twice ({known.where} and {origin}:{line})")
        missing = set(categories) - set(explanations)
        if missing:
            raise ValueError(f"check '{name}' has no explanation for {sorted(missing)}")
        kind: RuleKind = "builtin" if fn.__module__.startswith("tieout.checks.") else "python"
        CHECKS[name] = Check(name, (fn.__doc__ or "").strip(), params, categories, tables, fn, explanations,
                             kind=kind, module=fn.__module__, origin=origin, line=line, version=version,
                             needs_catalog=needs_catalog)
        return fn

    return deco


def _validated(cfg: Config, check: Check, raw: dict[str, Any], at: tuple[str | int, ...]) -> CheckParams:
    try:
        return check.params.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = (*at, *first["loc"])
        key = ".".join(str(p) for p in loc)
        msg = "unknown parameter" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(f"{cfg.where(loc)}: {key}: {msg}") from None


def check_params(cfg: Config, name: str, check: Check | None = None) -> CheckParams:
    """The validated parameters of check `name`, with errors naming the YAML line."""
    check = check or CHECKS[name]
    raw = cfg.checks.get(name, {}) or {}
    params = _validated(cfg, check, raw, ("checks", name))
    check_variants(cfg, name, check, params)  # overrides are validated with the rest
    return params


@dataclass(frozen=True)
class Scope:
    """Which findings an override's parameters apply to: a currency, a customer segment, or both."""

    currency: str | None
    segment: str | None

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in (("currency", self.currency), ("segment", self.segment)) if v)


def check_variants(cfg: Config, name: str, check: Check | None = None,
                   params: CheckParams | None = None) -> list[tuple[Scope | None, CheckParams]]:
    """The base parameters (scope None) and one parameter set per override, in config order."""
    check = check or CHECKS[name]
    raw = cfg.checks.get(name, {}) or {}
    base = params or _validated(cfg, check, raw, ("checks", name))
    out: list[tuple[Scope | None, CheckParams]] = [(None, base)]
    for i, item in enumerate(base.overrides):
        at = ("checks", name, "overrides", i)
        scope_keys = {k: item.get(k) for k in ("currency", "segment")}
        if not any(scope_keys.values()):
            raise ConfigError(f"{cfg.where(at)}: {'.'.join(map(str, at))}: an override needs `currency:` "
                              "and/or `segment:`")
        changes = {k: v for k, v in item.items() if k not in scope_keys}
        for key in ("enabled", "mode", "overrides"):
            if key in changes:
                raise ConfigError(f"{cfg.where((*at, key))}: {'.'.join(map(str, at))}.{key}: not allowed in an "
                                  "override (it applies to the whole check)")
        merged = {k: v for k, v in raw.items() if k != "overrides"} | changes
        variant = _validated(cfg, check, merged, at)
        currency = scope_keys["currency"]
        out.append((Scope(str(currency).upper() if currency else None,
                          str(scope_keys["segment"]) if scope_keys["segment"] else None), variant))
    return out


def validate_check_names(cfg: Config, known: Iterable[str] | None = None) -> None:
    names = set(CHECKS if known is None else known)
    for name in cfg.checks:
        if name not in names:
            raise ConfigError(
                f"{cfg.where(('checks', name))}: checks.{name}: unknown check "
                f"(known: {', '.join(sorted(names))})"
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
