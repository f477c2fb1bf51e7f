"""Normalize raw text rows into the canonical model, on the engine.

Each canonical column gets a parse expression and an error expression; a row keeps the first error
it has (`_error_column`, `_error_value`, `_error_reason`) so the quality gate can quarantine it with
file, line and column. Nothing here drops a row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from tieout.config import SourceConfig
from tieout.engines.base import Engine
from tieout.errors import ConfigError, InputError
from tieout.model import Kind, Table
from tieout.money import CURRENCY_EXPONENTS
from tieout.sources.base import RawFrame, SourceFormat

UTC_TS = dt.Timestamp(timezone="UTC")
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_NON_CENT_EXPONENTS = {code: exp for code, exp in CURRENCY_EXPONENTS.items() if exp != 2}


@dataclass(frozen=True)
class Mapping_:
    """The effective mapping of one source onto one canonical table."""

    columns: dict[str, tuple[str, ...]]  # canonical -> source columns (first non-empty wins)
    constants: dict[str, str]
    value_maps: dict[str, dict[str, str]]
    amount_unit: str
    date_formats: tuple[str, ...]


def effective_mapping(src: SourceConfig, fmt: SourceFormat, table: Table, found: tuple[str, ...]) -> Mapping_:
    """Format defaults, overlaid by the config, plus same-name columns for anything left unmapped."""
    columns: dict[str, tuple[str, ...]] = {}
    for canon, spec in fmt.columns.items():
        columns[canon] = (spec,) if isinstance(spec, str) else tuple(spec)
    for canon, given in src.columns.items():
        if canon not in table.column_names:
            raise ConfigError(
                f"source '{src.name}': columns.{canon}: '{table.name}' has no column '{canon}' "
                f"(columns: {', '.join(table.column_names)})"
            )
        columns[canon] = (given,) if isinstance(given, str) else tuple(given)
    constants = {**fmt.constants, **src.constants}
    lowered = {c.lower(): c for c in found}
    for col in table.columns:
        if col.name not in columns and col.name not in constants and col.name.lower() in lowered:
            columns[col.name] = (lowered[col.name.lower()],)
    value_maps: dict[str, dict[str, str]] = {}
    for canon, vm in list(fmt.value_maps.items()) + list(src.value_maps.items()):
        value_maps.setdefault(canon, {}).update({k.strip().lower(): v for k, v in vm.items()})
    return Mapping_(
        columns=columns,
        constants=constants,
        value_maps=value_maps,
        amount_unit=src.amount_unit or fmt.amount_unit,
        date_formats=tuple(src.date_formats) if src.date_formats else fmt.date_formats,
    )


def check_columns(raw: RawFrame, mapping: Mapping_, table: Table) -> None:
    """A required canonical column with no source column is a file-level error (line 1: header)."""
    present = set(raw.columns)
    for canon, names in mapping.columns.items():
        missing = [n for n in names if n not in present]
        if len(missing) == len(names):
            raise InputError(
                raw.file,
                f"missing column '{names[0]}' (mapped to {table.name}.{canon}); "
                f"found: {', '.join(raw.columns) or 'no columns'}",
                line=1,
            )
    for col in table.columns:
        if col.required and col.name not in mapping.columns and col.name not in mapping.constants:
            raise InputError(
                raw.file,
                f"no column for required {table.name}.{col.name}: add a column named '{col.name}' or "
                f"map one under `columns:`; found: {', '.join(raw.columns) or 'no columns'}",
                line=1,
            )


def _source_text(raw: ir.Table, names: tuple[str, ...], present: set[str]) -> ir.StringValue:
    parts = [raw[n].strip().nullif("") for n in names if n in present]
    return parts[0] if len(parts) == 1 else ibis.coalesce(*parts)


def _money_text(text: ir.StringValue, decimal_separator: str) -> ir.StringValue:
    s = text.re_replace(r"[\s\x{00A0}$€£¥]", "")
    if decimal_separator == ",":
        s = s.replace(".", "").replace(",", ".")
    else:
        s = s.replace(",", "")
    paren = s.startswith("(") & s.endswith(")")
    s = ibis.ifelse(paren, "-" + s.substr(1, s.length() - 2), s)
    return s.replace("--", "")


def _scale(currency: ir.StringValue) -> ir.IntegerValue:
    exp = currency.substitute(_NON_CENT_EXPONENTS, else_=2)
    return ibis.cases((exp == 0, 1), (exp == 3, 1000), (exp == 4, 10000), else_=100)


@dataclass
class _Parsed:
    value: ir.Value
    error: ir.BooleanValue | None
    reason: ir.StringValue | None


def _quote(text: ir.StringValue) -> ir.StringValue:
    return "'" + text.substr(0, 60) + "'"


def _parse(
    engine: Engine,
    kind: Kind,
    text: ir.StringValue,
    currency: ir.StringValue | None,
    mapping: Mapping_,
    col_name: str,
    vocabulary: tuple[str, ...],
    src: SourceConfig,
) -> _Parsed:
    present = text.notnull()
    if kind in (Kind.ID, Kind.TEXT):
        return _Parsed(text, None, None)
    if kind is Kind.NAME:
        return _Parsed(text.re_replace(r"\s+", " "), None, None)
    if kind is Kind.CURRENCY:
        code = text.upper()
        bad = present & ~code.isin(sorted(CURRENCY_EXPONENTS))
        return _Parsed(code, bad, "unknown currency " + _quote(text) + " (not an ISO-4217 code)")
    if kind is Kind.MONEY:
        assert currency is not None
        cleaned = _money_text(text, src.decimal_separator)
        number = cleaned.try_cast(dt.Decimal(38, 9))
        if mapping.amount_unit == "minor":
            minor_dec = number
            precision_msg = " is not a whole number of minor units"
        else:
            minor_dec = number * _scale(currency)
            precision_msg = " has more decimal places than its currency allows"
        not_number = present & number.isnull()
        too_precise = present & number.notnull() & (minor_dec != minor_dec.round(0))
        too_big = present & number.notnull() & (minor_dec.abs() > 9_000_000_000_000_000)
        bad = not_number | too_precise | too_big
        reason = ibis.cases(
            (not_number, _quote(text) + " is not a number"),
            (too_big, _quote(text) + " is too large"),
            else_=_quote(text) + precision_msg + " (" + currency.fill_null("?") + ")",
        )
        value = ibis.ifelse(bad, ibis.null(dt.int64), minor_dec.round(0).cast(dt.int64))
        return _Parsed(value, bad, reason)
    if kind in (Kind.TIMESTAMP, Kind.DATE):
        parsed = _parse_datetime(engine, text, mapping.date_formats)
        bad = present & parsed.isnull()
        reason = _quote(text) + " is not a date/time in a known format (" + ", ".join(mapping.date_formats) + ")"
        if kind is Kind.DATE:
            return _Parsed(parsed.date(), bad, reason)
        return _Parsed(engine.local_to_utc(parsed, src.timezone), bad, reason)
    if kind is Kind.INTEGER:
        number = text.replace(",", "").try_cast(dt.int64)
        return _Parsed(number, present & number.isnull(), _quote(text) + " is not a whole number")
    if kind is Kind.DECIMAL:
        number = text.replace("%", "").try_cast(dt.Decimal(18, 6))
        return _Parsed(number, present & number.isnull(), _quote(text) + " is not a number")
    if kind is Kind.BOOL:
        low = text.lower()
        value = ibis.cases((low.isin(_TRUE), True), (low.isin(_FALSE), False), else_=ibis.null(dt.boolean))
        return _Parsed(value, present & value.isnull(), _quote(text) + " is not true/false")
    if kind is Kind.ENUM:
        low = text.lower()
        vm = mapping.value_maps.get(col_name, {})
        value = low.substitute(vm, else_=low) if vm else low
        bad = present & ~value.isin(list(vocabulary))
        return _Parsed(value, bad, "unknown value " + _quote(text) + " (expected one of " + ", ".join(vocabulary) + ")")
    raise AssertionError(f"unhandled kind {kind}")


def _parse_datetime(engine: Engine, text: ir.StringValue, formats: tuple[str, ...]) -> ir.TimestampValue:
    parts: list[ir.TimestampValue] = []
    for fmt in formats:
        if fmt == "unix":
            parts.append(text.try_cast(dt.int64).as_timestamp("s"))
        else:
            parts.append(engine.parse_timestamp(text, fmt))
    return parts[0] if len(parts) == 1 else ibis.coalesce(*parts)


_IBIS_TYPES: Mapping[Kind, dt.DataType] = {
    Kind.ID: dt.string,
    Kind.TEXT: dt.string,
    Kind.NAME: dt.string,
    Kind.CURRENCY: dt.string,
    Kind.ENUM: dt.string,
    Kind.MONEY: dt.int64,
    Kind.INTEGER: dt.int64,
    Kind.DECIMAL: dt.Decimal(18, 6),
    Kind.BOOL: dt.boolean,
    Kind.DATE: dt.date,
    Kind.TIMESTAMP: UTC_TS,
}


def ibis_type(kind: Kind) -> dt.DataType:
    return _IBIS_TYPES[kind]


def normalize(
    engine: Engine, raw: RawFrame, src: SourceConfig, fmt: SourceFormat, table: Table, system: str
) -> ir.Table:
    """Canonical columns + source/source_ref + `_file`, `_line` and the first error of each row."""
    mapping = effective_mapping(src, fmt, table, raw.columns)
    check_columns(raw, mapping, table)
    t = raw.table
    present = set(raw.columns)

    texts: dict[str, ir.StringValue] = {}
    for col in table.columns:
        if col.name in mapping.columns:
            texts[col.name] = _source_text(t, mapping.columns[col.name], present)
            if col.name in mapping.constants:  # a constant fills what the file leaves empty
                texts[col.name] = ibis.coalesce(texts[col.name], ibis.literal(mapping.constants[col.name]))
        elif col.name in mapping.constants:
            texts[col.name] = ibis.literal(mapping.constants[col.name], dt.string)
        else:
            texts[col.name] = ibis.null(dt.string)

    currency_text = texts.get("currency")
    currency = currency_text.upper() if currency_text is not None else None
    values: dict[str, ir.Value] = {}
    errors: list[tuple[ir.BooleanValue, str, ir.StringValue, ir.StringValue]] = []
    for col in table.columns:
        text = texts[col.name]
        if col.required:
            errors.append((text.isnull(), col.name, ibis.literal(""), ibis.literal("required value is empty")))
        parsed = _parse(engine, col.kind, text, currency, mapping, col.name, col.vocabulary, src)
        values[col.name] = parsed.value.cast(ibis_type(col.kind))
        if parsed.error is not None and parsed.reason is not None:
            errors.append((parsed.error, col.name, text, parsed.reason))

    if errors:
        error_column = ibis.cases(*[(cond, ibis.literal(name)) for cond, name, _, _ in errors],
                                  else_=ibis.null(dt.string))
        error_value = ibis.cases(*[(cond, val) for cond, _, val, _ in errors], else_=ibis.null(dt.string))
        error_reason = ibis.cases(*[(cond, why) for cond, _, _, why in errors], else_=ibis.null(dt.string))
    else:
        error_column = error_value = error_reason = ibis.null(dt.string)
    line = t["_line"].cast(dt.int64)
    return t.select(
        **values,
        source=ibis.literal(system),
        source_ref=ibis.literal(raw.file + ":") + line.cast(dt.string),
        _file=ibis.literal(raw.file),
        _line=line,
        _error_column=error_column,
        _error_value=error_value,
        _error_reason=error_reason,
    )
