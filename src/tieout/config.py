"""`tieout.yaml`: one pydantic model per section; errors name the file, the line and the key path.

This room parses and validates configuration only. Check parameters are validated against each
check's own parameter model (see `checks.registry`), using `Config.where` for the line.
"""

from __future__ import annotations

import os
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

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
        probe = tuple(loc)
        while probe and probe not in self._lines:
            probe = probe[:-1]
        line = self._lines.get(probe)
        return f"{self._path.name}:{line}" if line else self._path.name

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


def _line_map(node: yaml.Node, loc: Location, out: dict[Location, int]) -> None:
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, str(key.value))
            out[child] = key.start_mark.line + 1
            _line_map(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*loc, i), out)


def _expand_env(value: Any, where: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: environment variable ${{{name}}} is not set")
            return os.environ[name]

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, where) for v in value]
    return value


def parse_config(text: str, path: Path) -> Config:
    """Validate YAML text; `path` is used for messages and to resolve relative paths."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path.name}{line}: not valid YAML: {problem}") from None
    lines: dict[Location, int] = {}
    if node is not None:
        _line_map(node, (), lines)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}:1: the top level must be a mapping of sections")
    data = _expand_env(data, path.name)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        probe = loc
        while probe and probe not in lines:
            probe = probe[:-1]
        at = lines.get(probe)
        where = f"{path.name}:{at}" if at else path.name
        key = ".".join(str(p) for p in loc) or "(root)"
        message = "unknown key (not allowed here)" if first["type"] == "extra_forbidden" else first["msg"]
        more = len(exc.errors()) - 1
        tail = f"\n({more} more problem{'s' if more > 1 else ''} after fixing this one)" if more else ""
        raise ConfigError(f"{where}: {key}: {message}{tail}") from None
    cfg._path = path
    cfg._lines = lines
    names = [s.name for s in cfg.sources]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise ConfigError(f"{cfg.where(('sources', i, 'name'))}: sources.{i}.name: duplicate source "
                              f"name '{name}'")
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
