"""Rule test cases: a YAML file beside each rule (`<name>.cases.yaml`) with tiny canonical input
tables and the findings expected. Each case runs the rule on the engine exactly as a run does and
reports pass/fail with a diff of expected versus actual findings.

Case file layout (docs/rules.md):

    cases:
      - name: a refund billing never recorded
        as_of: 2026-03-31            # optional: default the latest date in the tables
        params: {date_window_days: 3}  # optional: the check's parameters
        tables:
          gateway_transactions:
            - {txn_id: re_1, type: refund, status: succeeded, gross: -500, currency: USD,
               created_at: "2026-03-02T10:00:00Z"}
        expect:
          - {category: refund_not_reflected, subject: re_1, amount_at_risk: 500}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml
from pydantic import ValidationError

from tieout.billing.catalog import BillingConfig
from tieout.checks.registry import FINDING_COLUMNS, Check, CheckContext
from tieout.config import Location, _line_map, _Loader
from tieout.engines.base import Engine
from tieout.errors import ConfigError
from tieout.model import LINEAGE_COLUMNS, TABLES, Kind
from tieout.normalize import ibis_type
from tieout.rules.execute import evaluate
from tieout.rules.failures import RuleError, first_line

CASE_KEYS = ("name", "as_of", "home_currency", "params", "tables", "expect", "billing")


@dataclass
class Case:
    rule: str
    name: str
    file: str
    line: int
    as_of: date
    home_currency: str
    params: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]]
    expect: list[dict[str, Any]]
    billing: dict[str, Any] = field(default_factory=dict)  # the `billing:` section (checks that price invoices)


@dataclass
class CaseResult:
    case: Case
    diff: list[str] = field(default_factory=list)  # '- missing ...', '+ unexpected ...', '~ differs ...'
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and not self.diff


class CaseFileError(ConfigError):
    """A case file is malformed; the message names the file and line."""


def _value(kind: Kind, raw: Any, where: str, col: str) -> Any:
    if raw is None:
        return None
    try:
        if kind in (Kind.MONEY, Kind.INTEGER):
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise ValueError
            return int(raw)
        if kind is Kind.DECIMAL:
            return Decimal(str(raw))
        if kind is Kind.BOOL:
            if isinstance(raw, bool):
                return raw
            raise ValueError
        if kind is Kind.DATE:
            return date.fromisoformat(str(raw))
        if kind is Kind.TIMESTAMP:
            ts = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
            return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except (ValueError, InvalidOperation):
        expected = {Kind.MONEY: "integer minor units", Kind.INTEGER: "an integer", Kind.BOOL: "true or false",
                    Kind.DATE: "a date (2026-03-31)", Kind.TIMESTAMP: "a timestamp (2026-03-31T10:00:00Z)",
                    Kind.DECIMAL: "a number"}[kind]
        raise CaseFileError(f"{where}: column '{col}': {raw!r} is not {expected}") from None
    return str(raw)


def load_cases(check: Check, path: Path | None = None) -> list[Case]:
    """The cases of `check` (none when it has no case file)."""
    path = path or check.cases_file
    if not path.is_file():
        return []
    shown = path.name
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CaseFileError(f"{shown}{':' + str(mark.line + 1) if mark else ''}: not valid YAML: "
                            f"{getattr(exc, 'problem', None) or exc}") from None
    lines: dict[Location, int] = {}
    if node is not None:
        _line_map(node, (), lines, path)

    def at(*loc: str | int) -> str:
        probe: Location = tuple(loc)
        while probe and probe not in lines:
            probe = probe[:-1]
        return f"{shown}:{lines.get(probe, 1)}"

    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise CaseFileError(f"{at()}: a case file is a mapping with a `cases:` list")
    cases = []
    for i, raw in enumerate(data["cases"]):
        if not isinstance(raw, dict):
            raise CaseFileError(f"{at('cases', i)}: a case is a mapping ({', '.join(CASE_KEYS)})")
        unknown = [k for k in raw if k not in CASE_KEYS]
        if unknown:
            raise CaseFileError(f"{at('cases', i, unknown[0])}: unknown key '{unknown[0]}' (known: "
                                f"{', '.join(CASE_KEYS)})")
        tables: dict[str, list[dict[str, Any]]] = {}
        for tname, rows in (raw.get("tables") or {}).items():
            if tname not in TABLES:
                raise CaseFileError(f"{at('cases', i, 'tables', tname)}: unknown table '{tname}' (canonical "
                                    f"tables: {', '.join(sorted(TABLES))})")
            table = TABLES[tname]
            parsed = []
            for r, row in enumerate(rows or []):
                where = at("cases", i, "tables", tname, r)
                if not isinstance(row, dict):
                    raise CaseFileError(f"{where}: a row is a mapping of column: value")
                bad = [c for c in row if c not in table.column_names and c not in LINEAGE_COLUMNS]
                if bad:
                    raise CaseFileError(f"{where}: {tname} has no column '{bad[0]}'")
                values = {c.name: _value(c.kind, row.get(c.name), where, c.name) for c in table.columns}
                values["source"] = str(row.get("source") or "case")
                line = lines.get(("cases", i, "tables", tname, r), 0)
                values["source_ref"] = str(row.get("source_ref") or f"{shown}:{line}")
                parsed.append(values)
            tables[tname] = parsed
        expect = raw.get("expect") or []
        for e, item in enumerate(expect):
            if not isinstance(item, dict) or "subject" not in item:
                raise CaseFileError(f"{at('cases', i, 'expect', e)}: an expected finding is a mapping with at "
                                    "least `subject:`")
            bad = [k for k in item if k not in FINDING_COLUMNS]
            if bad:
                raise CaseFileError(f"{at('cases', i, 'expect', e, bad[0])}: '{bad[0]}' is not a finding column "
                                    f"({', '.join(FINDING_COLUMNS)})")
        as_of = raw.get("as_of")
        cases.append(Case(
            rule=check.name, name=str(raw.get("name") or f"case {i + 1}"), file=str(path),
            line=lines.get(("cases", i), 1),
            as_of=_value(Kind.DATE, as_of, at("cases", i, "as_of"), "as_of") if as_of else _latest(tables),
            home_currency=str(raw.get("home_currency") or "USD"), params=dict(raw.get("params") or {}),
            tables=tables, expect=list(expect), billing=dict(raw.get("billing") or {})))
    return cases


def _latest(tables: dict[str, list[dict[str, Any]]]) -> date:
    days = [v.date() if isinstance(v, datetime) else v for rows in tables.values() for r in rows
            for v in r.values() if isinstance(v, date)]
    return max(days) if days else date(2026, 1, 1)


def _arrow(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    import ibis

    table = TABLES[name]
    schema = ibis.schema({**{c.name: ibis_type(c.kind) for c in table.columns},
                          **{c: "string" for c in LINEAGE_COLUMNS}}).to_pyarrow()
    return pa.Table.from_pylist(rows, schema=schema)


def _label(row: dict[str, Any], keys: list[str]) -> str:
    return " ".join(f"{k}={row.get(k)!r}" for k in keys)


def _same(expected: Any, actual: Any) -> bool:
    if expected is None or actual is None:
        return expected is actual
    return str(expected) == str(actual)


def compare(expect: list[dict[str, Any]], rows: list[dict[str, Any]], default_category: str | None) -> list[str]:
    """Diff lines between expected and actual findings; empty when they agree."""
    left = list(rows)
    diff = []
    for item in expect:
        want = {"category": default_category, **item} if default_category else dict(item)
        match = next((r for r in left if _same(want.get("category"), r["category"])
                      and _same(want["subject"], r["subject"])), None)
        if match is None:
            diff.append(f"- missing:    {_label(want, list(want))}")
            continue
        left.remove(match)
        for k, v in want.items():
            if not _same(v, match[k]):
                diff.append(f"~ differs:    {match['category']} {match['subject']!r}: {k} expected {v!r}, "
                            f"got {match[k]!r}")
    shown = ["category", "subject", "currency", "amount_at_risk", "expected", "actual"]
    diff.extend(f"+ unexpected: {_label(r, shown)}" for r in left)
    return diff


def _entity_links(engine: Engine, tables: dict[str, Any]) -> Any:
    """The links a run would make from these tables (no alias table, no stored decisions)."""
    from tieout.links import Decisions, resolve_on_engine

    return resolve_on_engine(engine, tables, Decisions([], [])).table


def run_case(check: Check, case: Case, engine: Engine) -> CaseResult:
    """Run one case on `engine`: the check's tables (empty unless given) and its parameters."""
    try:
        params = check.params.model_validate(case.params)
    except ValidationError as exc:
        first = exc.errors()[0]
        return CaseResult(case, error=f"params.{'.'.join(map(str, first['loc']))}: {first['msg']}")
    try:
        billing = BillingConfig.model_validate(case.billing) if case.billing else None
    except ValidationError as exc:
        first = exc.errors()[0]
        return CaseResult(case, error=f"billing.{'.'.join(map(str, first['loc']))}: {first['msg']}")
    try:
        tables = {name: engine.from_arrow(f"case_{name}", _arrow(name, case.tables.get(name, [])))
                  for name in dict.fromkeys([*check.tables, *case.tables]) if name in TABLES}
        if "entity_links" in check.tables:  # derived by a run's entity resolution, not given by a case
            tables["entity_links"] = _entity_links(engine, tables)
        ctx = CheckContext(engine, tables, case.as_of, case.home_currency, billing=billing)
        rows = evaluate(check, ctx, [(None, params)])
    except RuleError as exc:
        return CaseResult(case, error=str(exc))
    except Exception as exc:  # a built-in check failing on its own case is a bug worth a clear report
        return CaseResult(case, error=first_line(exc))
    default = check.categories[0] if len(check.categories) == 1 else None
    return CaseResult(case, diff=compare(case.expect, rows, default))
