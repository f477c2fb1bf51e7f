"""Normalize raw text rows into the canonical model, on the engine.

Each canonical column gets a parse expression and an error expression; a row keeps the first error
it has (`_error_column`, `_error_value`, `_error_reason`) so the quality gate can quarantine it with
file, line and column. Nothing here drops a row.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.types as ir

from tieout.config import SourceConfig
from tieout.engines.base import Engine
from tieout.errors import ConfigError, InputError
from tieout.model import Kind, Table
from tieout.money import CURRENCY_EXPONENTS, amount_pattern
from tieout.sources.base import RawFrame, SourceFormat
from tieout.sources.tabular import file_read_error

UTC_TS = dt.Timestamp(timezone="UTC")
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
# A time of day followed by a UTC offset: 'T03:30:00Z', ' 03:30:00+02:00', ' 03:30:00.5+00'
_OFFSET = r"\s*(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)$"
_TIME_WITH_OFFSET = r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?" + _OFFSET
_OFFSET_PARTS = r"([+-])([0-9]{2}):?([0-9]{2})?$"
_NON_CENT_EXPONENTS = {code: exp for code, exp in CURRENCY_EXPONENTS.items() if exp != 2}
# A plain amount (no symbol, group separator, '+' or parentheses; at most 4 decimals, the largest
# currency exponent) is parsed as integer ten-thousandths of a major unit. Ten integer digits at
# most: the ten-thousandths stay below 10**18 (DuckDB's 64-bit decimal bound) and the amount is never
# too large (below 10**14 minor units even with 4 decimals).
_UNITS = 10_000
_PLAIN_AMOUNT = {sep: rf"^-?[0-9]{{1,10}}(?:{re.escape(sep)}[0-9]{{1,4}})?$" for sep in (".", ",")}


@dataclass(frozen=True)
class Mapping_:
    """The effective mapping of one source onto one canonical table."""

    columns: dict[str, tuple[str, ...]]  # canonical -> source columns (first non-empty wins)
    configured: frozenset[str]  # canonical columns the user mapped under `columns:` (must exist)
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
        configured=frozenset(src.columns),
        constants=constants,
        value_maps=value_maps,
        amount_unit=src.amount_unit or fmt.amount_unit,
        date_formats=tuple(src.date_formats) if src.date_formats else fmt.date_formats,
    )


def check_columns(raw: RawFrame, mapping: Mapping_, table: Table) -> Mapping_:
    """The mapping restricted to columns the file has.

    A column the user mapped, or one a required canonical column needs, that the file lacks is a
    file-level error (line 1: the header). A format's optional column may be absent: vendors' reports
    include some columns only on request (Stripe's `invoice_id`, `automatic_payout_id`...).
    """
    present = set(raw.columns)
    kept: dict[str, tuple[str, ...]] = {}
    for canon, names in mapping.columns.items():
        found = tuple(n for n in names if n in present)
        for name in found:
            if raw.header.count(name) > 1:  # which of the columns holds the values is anyone's guess
                raise InputError(
                    raw.file,
                    f"column '{name}' appears {raw.header.count(name)} times in the header (mapped to "
                    f"{table.name}.{canon}); rename or remove all but one",
                    line=1,
                )
        if found:
            kept[canon] = found
        elif canon in mapping.configured or table.column(canon).required:
            raise InputError(
                raw.file,
                f"missing column '{names[0]}' (mapped to {table.name}.{canon}); "
                f"found: {', '.join(raw.columns) or 'no columns'}",
                line=1,
            )
    for col in table.columns:
        if col.required and col.name not in kept and col.name not in mapping.constants:
            raise InputError(
                raw.file,
                f"no column for required {table.name}.{col.name}: add a column named '{col.name}' or "
                f"map one under `columns:`; found: {', '.join(raw.columns) or 'no columns'}",
                line=1,
            )
    return dataclasses.replace(mapping, columns=kept)


def _trimmed(text: ir.StringValue) -> ir.StringValue:
    """`text` without surrounding blanks, empty -> NULL. Trimming a set of characters costs engines
    far more than a look at the first and last character, and export cells are rarely padded; a
    cell starting or ending in a control character or blank (code <= 32, '' included) is trimmed."""
    padded = (text.ascii_str() <= 32) | (text.right(1).ascii_str() <= 32)
    return ibis.ifelse(padded, text.strip(), text).nullif("")


def _source_text(raw: ir.Table, names: tuple[str, ...], present: set[str]) -> ir.StringValue:
    parts = [_trimmed(raw[n]) for n in names if n in present]
    return parts[0] if len(parts) == 1 else ibis.coalesce(*parts)


def _money_text(text: ir.StringValue, decimal_separator: str) -> tuple[ir.BooleanValue, ir.StringValue]:
    """(is an amount, the amount as a plain signed decimal text), by `money.amount_pattern`."""
    s = text.re_replace(r"[\s\x{00A0}$€£¥]", "")
    valid = s.re_search(amount_pattern(decimal_separator))
    group, point = (",", ".") if decimal_separator == "." else (".", ",")
    s = s.replace(group, "").replace(point, ".")
    paren = s.startswith("(")
    return valid, ibis.ifelse(paren, "-" + s.substr(1, s.length() - 2), s)


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


def _prepare(
    engine: Engine, kind: Kind, text: ir.StringValue, mapping: Mapping_, col_name: str, src: SourceConfig
) -> dict[str, ir.Value]:
    """Intermediate values a kind's parse uses several times, computed once in their own projection.

    Without this stage each use would inline the whole expression and the SQL of a wide table
    grows to hundreds of kilobytes, which DuckDB takes seconds to plan.
    """
    if kind is Kind.MONEY:
        # The fast path: nearly every exported amount is a plain `-123.45`. Those become 64-bit
        # integer ten-thousandths (exact: at most 10 + 4 digits); 128-bit DECIMAL(38, 9) arithmetic
        # (~10x the cost) and the cleaning regexes run only on the other texts.
        point = src.decimal_separator
        fast = text.re_search(_PLAIN_AMOUNT[point])
        plain = text if point == "." else text.replace(point, ".")
        units = (plain.try_cast(dt.Decimal(18, 4)) * _UNITS).cast(dt.int64)
        valid, cleaned = _money_text(text, point)
        # DECIMAL(38, 9) would round a tenth decimal away silently: such a text is too precise.
        # Only a text longer than ten characters can have ten decimals: the regex runs on those.
        beyond_scale = cleaned.re_extract(r"\.([0-9]*?)0*$", 1).length() > 9
        number = ibis.ifelse(valid, cleaned, ibis.null(dt.string)).try_cast(dt.Decimal(38, 9))
        return {
            "fast": fast,
            "units": ibis.ifelse(fast, units, ibis.null(dt.int64)),
            "number": ibis.ifelse(fast, ibis.null(dt.Decimal(38, 9)), number),
            "beyond_scale": ibis.ifelse(fast | (cleaned.length() <= 10), False, beyond_scale),
        }
    if kind in (Kind.TIMESTAMP, Kind.DATE):
        has_offset = text.re_search(_TIME_WITH_OFFSET)
        local_text = ibis.ifelse(has_offset, text.re_replace(_OFFSET, ""), text)
        sign = ibis.ifelse(text.re_extract(_OFFSET_PARTS, 1) == "-", -1, 1)
        hours = text.re_extract(_OFFSET_PARTS, 2).nullif("").cast(dt.int64).fill_null(0)
        minutes = text.re_extract(_OFFSET_PARTS, 3).nullif("").cast(dt.int64).fill_null(0)
        return {
            "parsed": _parse_datetime(engine, local_text, mapping.date_formats),
            "has_offset": has_offset,
            # the parts are extracted only where there is an offset (most exports have none)
            "offset_minutes": ibis.ifelse(has_offset, sign * (hours * 60 + minutes), 0),
        }
    if kind in (Kind.ENUM, Kind.BOOL):
        low = text.lower()
        vm = mapping.value_maps.get(col_name, {})
        return {"value": low.substitute(vm, else_=low) if vm and kind is Kind.ENUM else low}
    return {}


def _parse(
    engine: Engine,
    kind: Kind,
    text: ir.StringValue,
    currency: ir.StringValue | None,
    scale: ir.IntegerValue | None,
    pre: Mapping[str, ir.Value],
    mapping: Mapping_,
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
        assert currency is not None and scale is not None, "a table with money has a currency column"
        fast: ir.BooleanValue = pre["fast"]
        units: ir.IntegerValue = pre["units"]
        per_minor = _UNITS if mapping.amount_unit == "minor" else _UNITS // scale  # 10000, 100, 10 or 1
        number: ir.DecimalValue = pre["number"]  # NULL on the fast path
        # bounded before scaling: DECIMAL(38, 9) times 10**exp overflows (a query error) past ~10**28
        bounded = ibis.ifelse(number.abs() <= 10**18, number, ibis.null(dt.Decimal(38, 9)))
        if mapping.amount_unit == "minor":
            minor_dec = bounded
            precision_msg = " is not a whole number of minor units"
        else:
            minor_dec = bounded * scale
            precision_msg = " has more decimal places than its currency allows"
        slow = present & ~fast
        not_number = slow & number.isnull()
        too_big = ibis.ifelse(slow & number.notnull(),
                              minor_dec.isnull() | (minor_dec.abs() > 9_000_000_000_000_000), False)
        too_precise = ibis.ifelse(
            fast, (units % per_minor) != 0,
            ibis.ifelse(slow & number.notnull(), (minor_dec != minor_dec.round(0)) | pre["beyond_scale"], False),
        )
        bad = not_number | too_big | too_precise
        reason = ibis.cases(
            (not_number, _quote(text) + " is not a number"),
            (too_big, _quote(text) + " is too large"),
            else_=_quote(text) + precision_msg + " (" + currency.fill_null("?") + ")",
        )
        value = ibis.cases(
            (bad, ibis.null(dt.int64)),
            (fast, units // per_minor),
            else_=minor_dec.round(0).cast(dt.int64),
        )
        return _Parsed(value, bad, reason)
    if kind in (Kind.TIMESTAMP, Kind.DATE):
        parsed: ir.TimestampValue = pre["parsed"]
        bad = present & parsed.isnull()
        reason = _quote(text) + " is not a date/time in a known format (" + ", ".join(mapping.date_formats) + ")"
        if kind is Kind.DATE:
            return _Parsed(parsed.date(), bad, reason)
        # an explicit offset ('Z', '+02:00', '+00' from a typed Parquet column) wins over `timezone:`
        offset: ir.IntegerValue = pre["offset_minutes"]
        shifted = parsed - offset.as_interval("m")
        value = ibis.ifelse(pre["has_offset"], engine.local_to_utc(shifted, "UTC"),
                            engine.local_to_utc(parsed, src.timezone))
        return _Parsed(value, bad, reason)
    if kind is Kind.INTEGER:
        integer = text.replace(",", "").try_cast(dt.int64)
        return _Parsed(integer, present & integer.isnull(), _quote(text) + " is not a whole number")
    if kind is Kind.DECIMAL:
        ratio = text.replace("%", "").try_cast(dt.Decimal(18, 6))
        return _Parsed(ratio, present & ratio.isnull(), _quote(text) + " is not a number")
    if kind is Kind.BOOL:
        low: ir.StringValue = pre["value"]
        flag = ibis.cases((low.isin(_TRUE), True), (low.isin(_FALSE), False), else_=ibis.null(dt.boolean))
        return _Parsed(flag, present & flag.isnull(), _quote(text) + " is not true/false")
    if kind is Kind.ENUM:
        mapped: ir.StringValue = pre["value"]
        bad = present & ~mapped.isin(list(vocabulary))
        expected = " (expected one of " + ", ".join(vocabulary) + ")"
        return _Parsed(mapped, bad, "unknown value " + _quote(text) + expected)
    raise AssertionError(f"unhandled kind {kind}")


def _literal_colon(fmt: str) -> bool:
    """Whether `fmt` has a ':' of its own (not one a directive such as %z might match)."""
    return ":" in re.sub(r"%.", "", fmt)


def _parse_datetime(engine: Engine, text: ir.StringValue, formats: tuple[str, ...]) -> ir.TimestampValue:
    parts: list[ir.TimestampValue] = []
    for fmt in formats:
        if fmt == "unix":
            parts.append(text.try_cast(dt.int64).as_timestamp("s"))
        elif _literal_colon(fmt):
            # A failed strptime costs engines far more than a success (DuckDB: ~50x): a format with
            # a ':' of its own cannot match a text without one, so dates skip the time-of-day formats.
            parts.append(ibis.ifelse(text.contains(":"), engine.parse_timestamp(text, fmt),
                                     ibis.null(dt.Timestamp())))
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


def _read_texts(engine: Engine, raw: RawFrame, used: set[str]) -> ir.Table:
    """Read the mapped columns of a lazily read CSV, as they are, into a scratch table.

    The view numbers the file's lines with `row_number()` over its scan, which runs on one thread, and
    so does everything in the same pipeline; cut here, the trimming and parsing that follow run on
    every core (DuckDB, 1M-row Stripe report: 6.4 s on one thread before, 1.4 s + 2 x 2.6 s after).
    (Numbering the stored rows by their position instead is not safe: DuckDB 2.0 does not always
    store a parallel CREATE TABLE AS in scan order.) A malformed row is found here, so the engine's
    error becomes the file's InputError here.
    """
    assert raw.lazy_path is not None
    try:
        return engine.materialize("texts", raw.table.select("_line", *(c for c in raw.columns if c in used)),
                                  scratch=True)
    except Exception as exc:
        if raw.lazy_path in str(exc):
            raise file_read_error(raw.file, exc) from None
        raise


def normalize(
    engine: Engine, raw: RawFrame, src: SourceConfig, fmt: SourceFormat, table: Table, system: str
) -> ir.Table:
    """Canonical columns + source/source_ref + `_file`, `_line` and the first error of each row,
    computed once into a table of the engine (`source_ref` is `_file:_line`, made when read)."""
    mapping = check_columns(raw, effective_mapping(src, fmt, table, raw.columns), table)
    present = set(raw.columns)
    used = {n for names in mapping.columns.values() for n in names}
    t = raw.table if raw.lazy_path is None else _read_texts(engine, raw, used)

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

    # Staged projections (texts -> intermediates -> values and error flags -> first error): each
    # stage refers to the previous one by column name, so the SQL stays linear in the table width.
    t1 = t.select(_line=t["_line"].cast(dt.int64), **{f"_t_{name}": text for name, text in texts.items()})

    def text_of(tt: ir.Table, name: str) -> ir.StringValue:
        return tt[f"_t_{name}"]

    prepared = {
        f"_p_{col.name}_{key}": value
        for col in table.columns
        for key, value in _prepare(engine, col.kind, text_of(t1, col.name), mapping, col.name, src).items()
    }
    if "currency" in texts:
        prepared["_scale"] = _scale(text_of(t1, "currency").upper())
    t2 = t1.select(*t1.columns, **prepared)
    currency = text_of(t2, "currency").upper() if "currency" in texts else None
    scale: ir.IntegerValue | None = t2["_scale"] if "currency" in texts else None

    values: dict[str, ir.Value] = {}
    flags: dict[str, ir.Value] = {}
    errors: list[tuple[str, str, bool]] = []  # flag column, canonical column, whether to show the text
    for col in table.columns:
        text = text_of(t2, col.name)
        if col.required:
            flag = f"_e{len(errors)}"
            flags[flag], flags[f"{flag}_why"] = text.isnull(), ibis.literal("required value is empty")
            errors.append((flag, col.name, False))
        prefix = f"_p_{col.name}_"
        pre = {c[len(prefix):]: t2[c] for c in t2.columns if c.startswith(prefix)}
        parsed = _parse(engine, col.kind, text, currency, scale, pre, mapping, col.vocabulary, src)
        values[col.name] = parsed.value.cast(ibis_type(col.kind))
        if parsed.error is not None and parsed.reason is not None:
            flag = f"_e{len(errors)}"
            # the reason text is built only on rows that have the error, not on every row
            flags[flag] = parsed.error
            flags[f"{flag}_why"] = ibis.ifelse(parsed.error, parsed.reason, ibis.null(dt.string))
            errors.append((flag, col.name, True))
    t3 = t2.select("_line", *(f"_t_{c}" for c in table.column_names), **values, **flags)

    if errors:
        error_column = ibis.cases(*[(t3[flag], ibis.literal(name)) for flag, name, _ in errors],
                                  else_=ibis.null(dt.string))
        error_value = ibis.cases(
            *[(t3[flag], t3[f"_t_{name}"] if shown else ibis.literal("")) for flag, name, shown in errors],
            else_=ibis.null(dt.string),
        )
        error_reason = ibis.cases(*[(t3[flag], t3[f"{flag}_why"]) for flag, _, _ in errors],
                                  else_=ibis.null(dt.string))
    else:
        error_column = error_value = error_reason = ibis.null(dt.string)
    # Stored once (the gate and the checks read it several times), without `source_ref`: a text
    # unique to every row costs more to compress than any other column, and it is `_file:_line`.
    stored = engine.materialize("norm", t3.select(
        *values, "_line", _error_column=error_column, _error_value=error_value, _error_reason=error_reason))
    if raw.lazy_path is not None:
        op = t.op()
        assert isinstance(op, ops.DatabaseTable)
        op.source.drop_table(op.name, force=True)
    return stored.select(
        *values,
        source=ibis.literal(system),
        source_ref=ibis.literal(raw.file + ":") + stored._line.cast(dt.string),
        _file=ibis.literal(raw.file),
        _line=stored._line,
        _error_column=stored._error_column,
        _error_value=stored._error_value,
        _error_reason=stored._error_reason,
    )
