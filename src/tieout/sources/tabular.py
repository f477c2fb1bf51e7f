"""Generic tabular files: CSV, Parquet, JSON lines and XLSX, mapped by column name."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from tieout.config import SourceConfig
from tieout.engines.base import Engine
from tieout.errors import InputError
from tieout.sources.base import RawFrame, SourceFormat, register_format


def _first_undecodable_line(path: Path, encoding: str) -> tuple[int, str] | None:
    """(line, reason) of the first line that does not decode, reading in binary chunks."""
    line = 1
    with path.open("rb") as fh:
        for raw in fh:
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as exc:
                return line, f"byte 0x{raw[exc.start]:02x} at position {exc.start + 1} is not valid {encoding}"
            line += 1
    return None


def ensure_not_empty(path: Path, shown: str) -> None:
    if not path.exists():
        raise InputError(shown, "file not found")
    if path.stat().st_size == 0:
        raise InputError(shown, "file is empty (expected a header row)", line=1)


def read_csv(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    ensure_not_empty(path, shown)
    encoding = src.encoding.lower()
    if encoding in ("utf-8", "utf8"):
        bad = _first_undecodable_line(path, "utf-8")
        if bad is not None:
            raise InputError(
                shown,
                f"not valid UTF-8: {bad[1]}; if the file is Latin-1 or UTF-16, set `encoding:` on "
                f"source '{src.name}'",
                line=bad[0],
            )
    try:
        table = engine.read_csv_text(path, encoding=encoding, delimiter=src.delimiter)
    except Exception as exc:  # the engine's CSV errors are already specific; keep their first line
        first = str(exc).strip().splitlines()[0]
        raise InputError(shown, f"cannot be read as CSV: {first}") from None
    cols = tuple(c for c in table.columns if c != "_line")
    return RawFrame(table, shown, cols)


def read_parquet(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    ensure_not_empty(path, shown)
    try:
        table = engine.read_parquet_text(path)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(shown, f"cannot be read as Parquet: {first}") from None
    return RawFrame(table, shown, tuple(c for c in table.columns if c != "_line"))


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _text_table(header: list[str], rows: list[list[str | None]], lines: list[int]) -> pa.Table:
    arrays = {"_line": pa.array(lines, pa.int64())}
    for i, name in enumerate(header):
        arrays[name] = pa.array([r[i] if i < len(r) else None for r in rows], pa.string())
    return pa.table(arrays)


def read_jsonl(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    """One JSON object per line; nested values are kept as JSON text. Bad lines stop the read."""
    ensure_not_empty(path, shown)
    header: list[str] = []
    records: list[dict[str, object]] = []
    lines: list[int] = []
    with path.open(encoding=src.encoding) as fh:
        for n, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(shown, f"not valid JSON: {exc.msg} (column {exc.colno})", line=n) from None
            if not isinstance(obj, dict):
                raise InputError(shown, "each line must be a JSON object", line=n)
            for key in obj:
                if key not in header:
                    header.append(key)
            records.append(obj)
            lines.append(n)
    rows = [[_as_text(r.get(k)) for k in header] for r in records]
    table = engine.from_arrow("raw", _text_table(header, rows, lines))
    return RawFrame(table, shown, tuple(header))


def read_xlsx(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    """First row is the header; `_line` is the spreadsheet row number."""
    from openpyxl import load_workbook

    ensure_not_empty(path, shown)
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise InputError(shown, f"cannot be opened as XLSX: {exc}") from None
    try:
        ws = wb[src.sheet] if src.sheet else wb.worksheets[0]
    except KeyError:
        raise InputError(shown, f"no sheet named '{src.sheet}' (sheets: {', '.join(wb.sheetnames)})") from None
    header: list[str] = []
    rows: list[list[str | None]] = []
    lines: list[int] = []
    for n, values in enumerate(ws.iter_rows(values_only=True), start=1):
        cells = [_xlsx_text(v) for v in values]
        if not header:
            if all(c is None for c in cells):
                continue
            header = [c.strip() if c else f"column_{i + 1}" for i, c in enumerate(cells)]
            continue
        if all(c is None for c in cells):
            continue
        rows.append(cells)
        lines.append(n)
    wb.close()
    if not header:
        raise InputError(shown, "sheet is empty (expected a header row)", line=1)
    return RawFrame(engine.from_arrow("raw", _text_table(header, rows, lines)), shown, tuple(header))


def _xlsx_text(value: object) -> str | None:
    from datetime import date, datetime

    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    return _as_text(value)


register_format(SourceFormat("csv", "Delimited text with a header row; columns mapped by name.", read_csv))
register_format(SourceFormat("parquet", "Apache Parquet; columns mapped by name.", read_parquet))
register_format(SourceFormat("jsonl", "JSON lines: one object per line; columns mapped by key.", read_jsonl))
register_format(SourceFormat("xlsx", "Excel workbook: header on the first non-empty row.", read_xlsx))
