"""`tieout.yaml`: one pydantic model per section; errors name the file, the line and the key path.

This room parses and validates configuration only. Check parameters are validated against each
check's own parameter model (see `checks.registry`), using `Config.where` for the line.
"""

from __future__ import annotations

import codecs
import os
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from tieout.billing.catalog import BillingConfig
from tieout.errors import ConfigError
from tieout.money import is_known_currency

Location = tuple[str | int, ...]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Section):
    """One input: a file (or glob) in a known format, mapped onto a canonical table."""

    name: str = Field(description="Unique name of this source; findings' evidence points back to it.")
    format: str = Field(description="Reader: csv, parquet, jsonl, xlsx, stripe_balance, stripe_payments, "
                        "quickbooks_gl (see `tieout sources formats`).")
    path: str = Field(description="File path or glob, relative to the config file.")
    table: str | None = Field(None, description="Canonical table filled; formats that know it set it.")
    system: str | None = Field(None, description="System name recorded as `source` on each row.")
    columns: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="canonical column -> source column (or a list: first non-empty wins). "
        "Overrides the format's own mapping.",
    )
    constants: dict[str, str] = Field(
        default_factory=dict, description="canonical column -> fixed value for every row (e.g. currency)."
    )
    value_maps: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="canonical column -> {source value: canonical value}, e.g. statuses. "
        "Matching is case-insensitive.",
    )
    amount_unit: Literal["major", "minor"] | None = Field(
        None, description="'major' for decimal exports ('10.00'), 'minor' for API-style integers (1000)."
    )
    date_formats: list[str] | None = Field(
        None, description="strftime formats tried in order; 'unix' for epoch seconds."
    )
    timezone: str = Field("UTC", description="Zone of naive timestamps in this source (converted to UTC).")
    decimal_separator: Literal[".", ","] = Field(".", description="',' for European exports ('1.250,00').")
    encoding: str = Field("utf-8", description="Text encoding of CSV files (utf-8, latin-1, utf-16).")
    delimiter: str | None = Field(None, description="CSV delimiter; sniffed when absent.")
    sheet: str | None = Field(None, description="XLSX sheet name (first sheet when absent).")
    options: dict[str, Any] = Field(default_factory=dict, description="Format-specific options.")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding '{value}' (e.g. utf-8, latin-1, cp1252, utf-16)") from None
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_character_delimiter(cls, value: str | None) -> str | None:
        if value == "\\t":  # `delimiter: '\t'` in YAML single quotes is a backslash and a t
            return "\t"
        if value is not None and (len(value) != 1 or value in "\"\r\n"):
            raise ValueError(f"delimiter must be one character other than a quote or line break, got {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if value.upper() == "UTC":
            return "UTC"
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}' (an IANA name such as America/New_York)") from None
        return value


class SeverityConfig(_Section):
    """Severity from money at risk, in major units of the finding's currency."""

    high: Decimal = Field(Decimal("1000"), description="At or above this amount a finding is high.")
    medium: Decimal = Field(Decimal("100"), description="At or above this amount a finding is medium.")


class RuleConfig(_Section):
    """A custom rule: a SQL rule file (or glob of them), or a Python module whose checks it registers."""

    sql: str | None = Field(None, description="SQL rule YAML file or glob, relative to the config file "
                            "(see docs/rules.md).")
    python: str | None = Field(None, description="Python rule module: an importable name (my_rules.billing) or "
                               "a .py file relative to the config file; its @register_check functions are rules.")

    @model_validator(mode="after")
    def _one_kind(self) -> RuleConfig:
        if (self.sql is None) == (self.python is None):
            raise ValueError("give exactly one of `sql:` or `python:`")
        return self
class PriorityTier(_Section):
    """A priority tier: a finding reaches it by money at risk OR by age, whichever comes first."""

    name: str = Field(description="Tier name shown on findings (critical, high, medium...).")
    amount: Decimal | None = Field(None, ge=0, description="At or above this money at risk (major units of the "
                                   "finding's currency).")
    age_days: int | None = Field(None, ge=0, description="Or open at least this many days.")


def _default_tiers() -> list[PriorityTier]:
    return [PriorityTier(name="critical", amount=Decimal("100000"), age_days=5),
            PriorityTier(name="high", amount=Decimal("10000"), age_days=3),
            PriorityTier(name="medium", amount=Decimal("1000"), age_days=1)]


class PriorityConfig(_Section):
    """Priority from money at risk and age: the first tier (in order) a finding reaches."""

    tiers: list[PriorityTier] = Field(default_factory=_default_tiers, description="Tiers, highest first.")
    default: str = Field("low", description="Priority of a finding that reaches no tier.")


class RoutingRule(_Section):
    """Route matching findings to a team and owner; every given condition must hold."""

    check: str | None = Field(None, description="Only findings of this check.")
    category: str | None = Field(None, description="Only this finding category.")
    segment: str | None = Field(None, description="Only customers of this segment (customers.segment).")
    currency: str | None = Field(None, description="Only findings in this currency.")
    min_amount: Decimal | None = Field(None, ge=0, description="Money at risk at or above (major units).")
    max_amount: Decimal | None = Field(None, ge=0, description="Money at risk below (major units).")
    min_age_days: int | None = Field(None, ge=0, description="Open at least this many days.")
    team: str | None = Field(None, description="Team the finding goes to.")
    owner: str | None = Field(None, description="Owner the finding goes to.")

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str | None) -> str | None:
        from tieout.categories import CATEGORIES

        if value is not None and value not in CATEGORIES:
            raise ValueError(f"unknown category '{value}' (see `tieout categories`)")
        return value

    @field_validator("currency")
    @classmethod
    def _rule_currency(cls, value: str | None) -> str | None:
        if value is not None and not is_known_currency(value):
            raise ValueError(f"'{value}' is not an ISO-4217 currency code")
        return value.upper() if value else value


class EscalationConfig(_Section):
    """When a finding stays active past its SLA, it goes to a second owner."""

    after_days: int = Field(ge=1, description="SLA: days a finding may stay open, acknowledged or assigned.")
    to: str = Field(description="Owner it is escalated to.")


class RoutingConfig(_Section):
    """Who gets which finding: the first matching rule wins, else the default owner/team."""

    rules: list[RoutingRule] = Field(default_factory=list, description="Rules, tried in order.")
    default_owner: str | None = Field(None, description="Owner when no rule matches.")
    default_team: str | None = Field(None, description="Team when no rule matches (default: the category's team).")
    escalation: EscalationConfig | None = Field(None, description="Escalation on SLA breach.")


class NotifyChannelConfig(_Section):
    """One notification channel: a notifier type and its settings (see `tieout notify channels`)."""

    name: str = Field(description="Unique channel name (it is part of each notice's dedupe key).")
    type: str = Field(description="Notifier: slack, email or webhook.")
    owners: list[str] | None = Field(None, description="Only findings routed to these owners (default: all).")
    immediate: list[str] = Field(default_factory=lambda: ["critical"], description="Priorities sent at once, "
                                 "one message per finding; the others go in the per-owner digest.")
    digest: bool = Field(True, description="Send the per-owner digest (false: immediate notices only).")
    settings: dict[str, Any] = Field(default_factory=dict, description="The notifier's settings.")


class NotifyConfig(_Section):
    """Notifications of new, reopened and escalated findings."""

    channels: list[NotifyChannelConfig] = Field(default_factory=list, description="Channels.")
class EntitiesConfig(_Section):
    """Entity resolution: linking CRM, operations, entitlement and gateway accounts to billing
    customers (docs/entities.md)."""

    aliases: dict[str, str] = Field(default_factory=dict, description="Legacy or alternative name -> current "
                                    "billing name (a curated alias table; names are compared cleaned).")
    alias_file: str | None = Field(None, description="CSV with columns `alias,name`, same meaning as `aliases` "
                                   "(relative to the config file).")
    auto_score: float = Field(90, ge=0, le=100, description="Fuzzy similarity (0-100) at or above which a "
                              "clearly-best candidate with the same words is linked automatically.")
    review_score: float = Field(75, ge=0, le=100, description="Fuzzy similarity at or above which a candidate "
                                "goes to the review queue (`tieout links review`).")
    margin: float = Field(4, ge=0, le=100, description="The best candidate must beat the runner-up by this "
                          "much to be linked automatically.")
class DuckDBConfig(_Section):
    """Settings of the embedded DuckDB engine (`duckdb:` in tieout.yaml), used when `engine: duckdb`."""

    memory_limit: str | None = Field(
        None, description="Memory DuckDB may use before it spills to `temp_directory`, e.g. '8GB' "
        "(default: 2GB, or 80% of RAM if less; a run spills past it, it does not fail).")
    threads: int | None = Field(None, ge=1, description="Worker threads (default: one per core).")
    temp_directory: str | None = Field(
        None, description="Where spilled data goes, relative to the config file (default: the "
        "system temporary directory). Removed after the run.")


class Config(_Section):
    """Root of `tieout.yaml`."""

    engine: str = Field("duckdb", description="Compute engine: duckdb (embedded default) or spark.")
    duckdb: DuckDBConfig = Field(default_factory=lambda: DuckDBConfig.model_validate({}),
                                 description="DuckDB engine settings, see DuckDBConfig.")
    store: str = Field("sqlite:///tieout.db", description="SQLAlchemy URL of the findings store; "
                       "relative SQLite paths are relative to the config file.")
    home_currency: str = Field("USD", description="Currency of the general ledger.")
    as_of: date | None = Field(None, description="Reconciliation date; default: the latest date in the data.")
    sources: list[SourceConfig] = Field(default_factory=list, description="Inputs, see SourceConfig.")
    checks: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="check name -> parameters (see `tieout checks`)."
    )
    rules: list[RuleConfig] = Field(default_factory=list, description="Custom rules: SQL rule files and "
                                    "Python rule modules (see `tieout rules list`, docs/rules.md).")
    severity: SeverityConfig = Field(default_factory=lambda: SeverityConfig.model_validate({}))
    secrets_file: str | None = Field(None, description="File of NAME=value lines filling `${NAME}` in this "
                                     "config where the environment has none (keep it out of version control).")
    fail_on: Literal["high", "medium", "low", "never"] = Field(
        "high", description="`tieout run` exits 1 when a finding at or above this severity is open."
    )
    priority: PriorityConfig = Field(default_factory=lambda: PriorityConfig.model_validate({}))
    routing: RoutingConfig = Field(default_factory=lambda: RoutingConfig.model_validate({}))
    notify: NotifyConfig = Field(default_factory=lambda: NotifyConfig.model_validate({}))
    entities: EntitiesConfig = Field(default_factory=lambda: EntitiesConfig.model_validate({}),
                                     description="Entity resolution across systems, see EntitiesConfig.")
    billing: BillingConfig = Field(default_factory=lambda: BillingConfig.model_validate({}))

    _path: Path = PrivateAttr(default=Path("tieout.yaml"))
    _lines: dict[Location, int] = PrivateAttr(default_factory=dict)

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        from tieout.engines import engine_names  # the engine registry; imported late to keep config light

        if value not in engine_names():
            raise ValueError(f"unknown engine '{value}' (known: {', '.join(engine_names())})")
        return value

    @field_validator("duckdb", mode="before")
    @classmethod
    def _empty_duckdb_section(cls, value: Any) -> Any:
        return {} if value is None else value  # `duckdb:` with every key commented out (tieout init)

    @field_validator("home_currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if not is_known_currency(value):
            raise ValueError(f"'{value}' is not an ISO-4217 currency code")
        return value.upper()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def root(self) -> Path:
        """Directory that relative paths in the config are resolved against."""
        return self._path.parent

    def where(self, loc: Location) -> str:
        """'tieout.yaml:12' for the YAML node at `loc` (or its nearest known parent)."""
        return _where(self._path, self._lines, loc)

    def resolve(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p

    def store_url(self) -> str:
        prefix = "sqlite:///"
        if self.store.startswith(prefix) and not self.store.startswith(prefix + "/"):
            rest = self.store[len(prefix):]
            if rest and rest != ":memory:":
                return prefix + str(self.resolve(rest))
        return self.store


_ENV = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def _line_map(node: yaml.Node, loc: Location, out: dict[Location, int], path: Path) -> None:
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, str(key.value))
            line = key.start_mark.line + 1
            if child in out:  # PyYAML keeps the last value silently; a repeated key is a typo
                dotted = ".".join(str(p) for p in child)
                raise ConfigError(f"{path.name}:{line}: {dotted}: duplicate key (first at line {out[child]})")
            out[child] = line
            _line_map(value, child, out, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*loc, i), out, path)


def _where(path: Path, lines: dict[Location, int], loc: Location) -> str:
    probe = tuple(loc)
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe)
    return f"{path.name}:{line}" if line else path.name


def _dotted(loc: Location) -> str:
    return ".".join(str(p) for p in loc) or "(root)"


def _expand_env(value: Any, loc: Location, path: Path, lines: dict[Location, int],
                secrets: dict[str, str] | None = None) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in os.environ:
                return os.environ[name]
            if secrets and name in secrets:
                return secrets[name]
            raise ConfigError(f"{_where(path, lines, loc)}: {_dotted(loc)}: environment variable "
                              f"${{{name}}} is not set" + (" (nor in secrets_file)" if secrets is not None else ""))

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, (*loc, str(k)), path, lines, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, (*loc, i), path, lines, secrets) for i, v in enumerate(value)]
    return value


def _secrets_file(data: dict[str, Any], path: Path, lines: dict[Location, int]) -> dict[str, str] | None:
    """`NAME=value` lines of the file `secrets_file:` names (comments and blank lines skipped); its
    values fill `${NAME}` where the environment has none. Values are never echoed in errors."""
    name = data.get("secrets_file")
    if name is None:
        return None
    where = _where(path, lines, ("secrets_file",))
    if not isinstance(name, str):
        raise ConfigError(f"{where}: secrets_file: expected a file path")
    file = Path(name) if Path(name).is_absolute() else path.parent / name
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: secrets_file: cannot read '{name}': {exc.strerror}") from None
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not _ENV.fullmatch("${" + key.strip() + "}"):
            raise ConfigError(f"{name}:{n}: expected NAME=value (the value is not shown)")
        out[key.strip()] = value.strip().strip("'\"")
    return out


def _data_loc(data: Any, loc: Location) -> Location:
    """`loc` without pydantic's union-member tags ('str', 'list[str]'), which name no YAML node."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        if in_dict or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
        elif i < len(loc) - 1 or not isinstance(node, dict):
            continue  # a tag, not a key of the document
        out.append(part)
    return tuple(out)


def _validation_message(exc: ValidationError, data: Any, path: Path, lines: dict[Location, int]) -> str:
    problems: dict[Location, list[str]] = {}
    for err in exc.errors():
        loc = _data_loc(data, tuple(err["loc"]))
        msg = "unknown key (not allowed here)" if err["type"] == "extra_forbidden" else str(err["msg"])
        msg = msg.removeprefix("Value error, ")
        problems.setdefault(loc, [])
        if msg not in problems[loc]:
            problems[loc].append(msg)
    loc, msgs = next(iter(problems.items()))
    message = msgs[0] if len(msgs) == 1 else "; or ".join(msgs)  # a union: each alternative's complaint
    more = len(problems) - 1
    tail = f"\n({more} more problem{'s' if more > 1 else ''} after fixing this one)" if more else ""
    return f"{_where(path, lines, loc)}: {_dotted(loc)}: {message}{tail}"


class _Loader(yaml.SafeLoader):
    """Safe YAML without implicit timestamps: `as_of: 2026-13-40` then fails validation with its line
    (PyYAML's own date constructor raises a bare ValueError), and dates are parsed by pydantic."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_config(text: str, path: Path) -> Config:
    """Validate YAML text; `path` is used for messages and to resolve relative paths."""
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path.name}{line}: not valid YAML: {problem}") from None
    lines: dict[Location, int] = {}
    if node is not None:
        _line_map(node, (), lines, path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}:1: the top level must be a mapping of sections")
    data = _expand_env(data, (), path, lines, _secrets_file(data, path, lines))
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc, data, path, lines)) from None
    cfg._path = path
    cfg._lines = lines
    seen: dict[str, int] = {}
    for i, src in enumerate(cfg.sources):
        if src.name in seen:
            raise ConfigError(f"{cfg.where(('sources', i, 'name'))}: sources.{i}.name: duplicate source "
                              f"name '{src.name}' (first is sources.{seen[src.name]})")
        seen[src.name] = i
    return cfg


def load_config(path: str | Path) -> Config:
    """Read and validate a `tieout.yaml`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found (create one with `tieout init`)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: config is not UTF-8 text ({exc.reason})") from None
    return parse_config(text, p.resolve())
