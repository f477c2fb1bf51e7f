"""Custom SQL rules: a YAML file holding one SELECT over the canonical tables that returns one row
per finding. Validated when loaded (sqlglot, DuckDB dialect: one SELECT, known tables and columns,
the declared output columns) and run through Ibis, so the same rule runs on every engine.

This room turns a rule file into a `Check`; it never runs a whole reconciliation.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import sqlglot
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, TokenError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify

from tieout.categories import CATEGORIES
from tieout.checks.registry import FINDING_COLUMNS, Check, CheckContext, CheckParams, content_version
from tieout.model import LINEAGE_COLUMNS, TABLES, Kind
from tieout.normalize import ibis_type
from tieout.rules.failures import RuleFailure

DIALECT = "duckdb"
# Columns a rule's SELECT must return (one row per finding) and those it may add.
REQUIRED_OUTPUT = ("subject", "customer_id", "currency", "amount_at_risk", "expected", "actual", "evidence")
OPTIONAL_OUTPUT = ("period", "detail")
EXPLANATION_FIELDS = ("subject", "expected", "actual", "detail", "amount", "customer")


class SqlRuleSpec(BaseModel):
    """The keys of a SQL rule file."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Rule name (the `check` of its findings).")
    description: str = Field(description="What the rule verifies, one or two sentences.")
    category: str = Field(description="Finding category (see `tieout categories`).")
    severity: Literal["low", "medium", "high"] | None = Field(
        None, description="Fixed severity; default: from money at risk like built-in checks.")
    mode: Literal["active", "shadow"] = Field("active", description="shadow: findings are compared, not stored.")
    value_kind: Literal["money", "quantity", "text"] = Field("money", description="How expected/actual read.")
    explanation: str | None = Field(None, description="One-sentence template: {subject} {expected} {actual} "
                                    "{detail} {amount} {customer}; default: the category's definition.")
    sql: str = Field(description="One SELECT over the canonical tables returning the output columns.")


def sql_schema() -> dict[str, dict[str, str]]:
    """The canonical tables as sqlglot sees them: table -> column -> DuckDB type."""
    from ibis.backends.sql.datatypes import DuckDBType

    out: dict[str, dict[str, str]] = {}
    for t in TABLES.values():
        cols = {c.name: DuckDBType.from_ibis(ibis_type(c.kind)).sql(DIALECT) for c in t.columns}
        cols.update({c: DuckDBType.from_ibis(ibis_type(Kind.TEXT)).sql(DIALECT) for c in LINEAGE_COLUMNS})
        out[t.name] = cols
    return out


class SqlProblem(Exception):
    """A rule's SQL is not acceptable; `line` is 1-based within the SQL text, when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def _token_line(sql: str, name: str) -> int | None:
    try:
        tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
    except TokenError:
        return None
    for tok in tokens:
        if tok.text.strip('"').lower() == name.lower():
            return int(tok.line)
    return None


def validate_sql(sql: str) -> tuple[exp.Query, tuple[str, ...]]:
    """Parse and check a rule's SQL; returns the parsed query and the canonical tables it reads."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        raise SqlProblem(f"SQL syntax error: {first.get('description') or exc}", first.get("line")) from None
    except TokenError as exc:
        raise SqlProblem(f"SQL syntax error: {exc}") from None
    if len(statements) != 1:
        raise SqlProblem(f"expected exactly one SELECT statement, found {len(statements)}")
    query = statements[0]
    if not isinstance(query, exp.Query):
        raise SqlProblem(f"only a SELECT is allowed, found {query.key.upper()}", 1)
    for node in query.walk():
        if isinstance(node, exp.DML | exp.DDL | exp.Command):
            raise SqlProblem(f"only a SELECT is allowed, found {node.key.upper()}", 1)
    ctes = {c.alias_or_name.lower() for c in query.find_all(exp.CTE)}
    used: list[str] = []
    for t in query.find_all(exp.Table):
        if not isinstance(t.this, exp.Identifier):
            source = t.this.sql(DIALECT)
            raise SqlProblem(f"only canonical tables may be read, not {source}",
                             _token_line(sql, source.split("(")[0]) or 1)
        name = t.name.lower()
        if name in ctes:
            continue
        if t.db or name not in TABLES:
            raise SqlProblem(f"unknown table '{t.sql(DIALECT)}' (canonical tables: {', '.join(sorted(TABLES))})",
                             _token_line(sql, t.name))
        if name not in used:
            used.append(name)
    schema = sql_schema()
    try:
        qualified = qualify(query.copy(), schema=schema, dialect=DIALECT, validate_qualify_columns=True)
    except OptimizeError as exc:
        message = str(exc).strip().splitlines()[0]
        at = re.search(r"\.? Line: (\d+), Col: \d+\.?", message)  # sqlglot's position in the SQL text
        if at:
            message = message[:at.start()] + message[at.end():]
        column = re.search(r"Unknown column: (\w+)|Column '([^']+)' could not be resolved", message)
        if column:
            message = f"unknown column '{column.group(1) or column.group(2)}'"
        names = re.findall(r"'([^']+)'|: (\w+)", message)
        line = int(at.group(1)) if at else next(
            (ln for pair in names for n in pair if n and (ln := _token_line(sql, n))), None)
        raise SqlProblem(f"{message} (columns of each table: docs/rules.md)", line) from None
    assert isinstance(qualified, exp.Query)
    outputs = list(qualified.named_selects)
    missing = [c for c in REQUIRED_OUTPUT if c not in outputs]
    if missing:
        raise SqlProblem(f"the SELECT must return {', '.join(REQUIRED_OUTPUT)}; missing: {', '.join(missing)}")
    extra = [c for c in outputs if c not in REQUIRED_OUTPUT + OPTIONAL_OUTPUT]
    if extra:
        raise SqlProblem(f"unexpected output column(s) {', '.join(extra)} (allowed besides the required ones: "
                         f"{', '.join(OPTIONAL_OUTPUT)})", _token_line(sql, extra[0]))
    typed = annotate_types(qualified, schema=schema, dialect=DIALECT)
    assert isinstance(typed, exp.Query)
    for sel in typed.selects:
        if sel.alias_or_name == "amount_at_risk":
            kind = sel.type
            if kind is not None and not kind.is_type(*exp.DataType.INTEGER_TYPES, exp.DataType.Type.UNKNOWN,
                                               exp.DataType.Type.NULL):
                raise SqlProblem(f"amount_at_risk must be integer minor units, not {kind.sql(DIALECT)} "
                                 "(CAST(... AS BIGINT) after rounding on purpose)", _token_line(sql, "amount_at_risk"))
    return query, tuple(used)


def _wrapped_sql(query: exp.Query, spec: SqlRuleSpec, outputs: list[str]) -> str:
    """The rule's SELECT shaped into the finding columns, typed like the built-in checks' output."""
    def col(name: str, cast: str) -> str:
        return f"CAST(_rule.{name} AS {cast})" if name in outputs else f"CAST(NULL AS {cast})"

    def quote(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    parts = {
        "category": quote(spec.category),
        "subject": col("subject", "VARCHAR"),
        "customer_id": col("customer_id", "VARCHAR"),
        "currency": col("currency", "VARCHAR"),
        "amount_at_risk": "CAST(ABS(_rule.amount_at_risk) AS BIGINT)",
        "expected": col("expected", "VARCHAR"),
        "actual": col("actual", "VARCHAR"),
        "value_kind": quote(spec.value_kind),
        "period": col("period", "VARCHAR"),
        "evidence": col("evidence", "VARCHAR"),
        "detail": f"COALESCE({col('detail', 'VARCHAR')}, '')",
    }
    assert list(parts) == list(FINDING_COLUMNS)
    select = ", ".join(f"{v} AS {k}" for k, v in parts.items())
    return f"SELECT {select} FROM ({query.sql(dialect=DIALECT)}) AS _rule"


def _view(con: Any, name: str, table: ir.Table) -> Callable[[], Any]:
    return lambda: con.create_view(name, table, overwrite=True)


def _runner(sql: str, tables: tuple[str, ...]) -> Any:
    schema = ibis.schema(FINDING_COLUMNS)

    def run(ctx: CheckContext, params: CheckParams) -> ir.Table:
        del params
        con: Any = ctx.engine.con
        for name in tables:  # the rule reads the canonical tables by name: expose this run's as views
            ctx.memo(f"rules.sql_view.{name}", _view(con, name, ctx.table(name)))
        out: ir.Table = con.sql(sql, dialect=DIALECT, schema=schema)
        return out

    return run


def _node_lines(root: yaml.Node | None) -> dict[str, tuple[int, yaml.Node]]:
    out: dict[str, tuple[int, yaml.Node]] = {}
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            out[str(key.value)] = (key.start_mark.line + 1, value)
    return out


def load_sql_rule(path: Path, shown: str) -> Check | RuleFailure:
    """A SQL rule file as a `Check`, or the failure naming the rule, the file and the line."""
    from tieout.config import _Loader  # YAML without implicit dates, as tieout.yaml

    stem = path.name.split(".")[0]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return RuleFailure(stem, shown, None, f"cannot read the rule file ({exc})")
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return RuleFailure(stem, shown, mark.line + 1 if mark else None,
                           f"not valid YAML: {getattr(exc, 'problem', None) or exc}")
    lines = _node_lines(root)
    if not isinstance(data, dict):
        return RuleFailure(stem, shown, 1, "a SQL rule file is a mapping (name, description, category, sql, ...)")
    name = str(data.get("name") or stem)
    try:
        spec = SqlRuleSpec.model_validate(data)
    except ValidationError as exc:
        # A misspelt key also makes the right one missing: name the misspelling.
        first = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        key = str(first["loc"][0]) if first["loc"] else ""
        msg = "unknown key (not allowed here)" if first["type"] == "extra_forbidden" else first["msg"]
        return RuleFailure(name, shown, lines.get(key, (1, None))[0], f"{key}: {msg}")
    if spec.category not in CATEGORIES:
        return RuleFailure(name, shown, lines["category"][0],
                           f"category: unknown category '{spec.category}' (see `tieout categories`)")
    if spec.explanation is not None:
        fields = {f for _, f, _, _ in string.Formatter().parse(spec.explanation) if f is not None}
        unknown = sorted(fields - set(EXPLANATION_FIELDS))
        if unknown:
            return RuleFailure(name, shown, lines["explanation"][0], f"explanation: unknown placeholder "
                               f"{{{unknown[0]}}} (known: {', '.join(EXPLANATION_FIELDS)})")
    sql_key_line, sql_node = lines["sql"]
    # A block scalar ('sql: |') starts on the next line; a quoted or plain one on the key's line.
    first_sql_line = sql_key_line + 1 if getattr(sql_node, "style", None) in ("|", ">") else sql_key_line
    try:
        query, tables = validate_sql(spec.sql)
    except SqlProblem as exc:
        line = first_sql_line + exc.line - 1 if exc.line else sql_key_line
        return RuleFailure(spec.name, shown, line, str(exc))
    qualified = qualify(query.copy(), schema=sql_schema(), dialect=DIALECT)
    outputs = list(qualified.named_selects) if isinstance(qualified, exp.Query) else []
    template = spec.explanation or CATEGORIES[spec.category].definition
    return Check(
        name=spec.name, doc=spec.description, params=CheckParams, categories=(spec.category,), tables=tables,
        run=_runner(_wrapped_sql(query, spec, outputs), tables), explanations={spec.category: template},
        kind="sql", module="", origin=str(path), line=1, version=content_version(text), severity=spec.severity,
        mode=spec.mode,
    )


def rule_sql(check: Check) -> str | None:
    """The SQL text of a SQL rule (for `tieout rules show`)."""
    if check.kind != "sql":
        return None
    try:
        data = yaml.safe_load(Path(check.origin).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return str(data.get("sql", "")) if isinstance(data, dict) else None


def tables_markdown() -> str:
    """The canonical tables as SQL rules see them (a section of docs/rules.md, generated from `model`)."""
    schema = sql_schema()
    lines = []
    for t in TABLES.values():
        lines += [f"### `{t.name}`", "", t.doc + f" Key: {', '.join(t.key)}.", "", "| column | type | meaning |",
                  "|---|---|---|"]
        for c in t.columns:
            lines.append(f"| `{c.name}` | {schema[t.name][c.name]} | {c.doc.replace('|', chr(92) + '|')} |")
        lines.append(f"| `source`, `source_ref` | {schema[t.name]['source']} | system name; file:line or API id of "
                     "the record |")
        lines.append("")
    return "\n".join(lines)
