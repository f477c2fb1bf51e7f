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
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

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


class Config(_Section):
    """Root of `tieout.yaml`."""

    engine: str = Field("duckdb", description="Compute engine: duckdb (embedded default) or spark.")
    store: str = Field("sqlite:///tieout.db", description="SQLAlchemy URL of the findings store; "
                       "relative SQLite paths are relative to the config file.")
    home_currency: str = Field("USD", description="Currency of the general ledger.")
    as_of: date | None = Field(None, description="Reconciliation date; default: the latest date in the data.")
    sources: list[SourceConfig] = Field(default_factory=list, description="Inputs, see SourceConfig.")
    checks: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="check name -> parameters (see `tieout checks`)."
    )
    severity: SeverityConfig = Field(default_factory=lambda: SeverityConfig.model_validate({}))
    fail_on: Literal["high", "medium", "low", "never"] = Field(
        "high", description="`tieout run` exits 1 when a finding at or above this severity is open."
    )

    _path: Path = PrivateAttr(default=Path("tieout.yaml"))
    _lines: dict[Location, int] = PrivateAttr(default_factory=dict)

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        from tieout.engines import engine_names  # the engine registry; imported late to keep config light

        if value not in engine_names():
            raise ValueError(f"unknown engine '{value}' (known: {', '.join(engine_names())})")
        return value

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


def _expand_env(value: Any, loc: Location, path: Path, lines: dict[Location, int]) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise ConfigError(f"{_where(path, lines, loc)}: {_dotted(loc)}: environment variable "
                                  f"${{{name}}} is not set")
            return os.environ[name]

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, (*loc, str(k)), path, lines) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, (*loc, i), path, lines) for i, v in enumerate(value)]
    return value


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
    data = _expand_env(data, (), path, lines)
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
