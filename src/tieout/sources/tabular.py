"""Generic tabular files: CSV, Parquet, JSON lines and XLSX, mapped by column name."""

from __future__ import annotations

import codecs
import csv
import json
import re
import tempfile
from pathlib import Path

import ibis.expr.types as ir
import pyarrow as pa

from tieout.config import SourceConfig
from tieout.engines.base import Engine
from tieout.errors import InputError
from tieout.sources.base import RawFrame, SourceFormat, register_format

_UTF8 = ("utf-8", "utf8", "utf_8", "utf-8-sig", "utf_8_sig")
_CHUNK = 1 << 22
_MAX_FIELD = 1 << 30
# A blank line inside a chunk, and one at its start (chunks start at a line start). Two patterns,
# not `(?:^|\n)`: an alternation at every position makes the search ~20x slower.
_BLANK_LINE = re.compile(rb"\n[ \t\r]*\n")
_BLANK_FIRST_LINE = re.compile(rb"[ \t\r]*\n")
_DUCKDB_LINE = re.compile(r"\bLine: (\d+)")


def _first_undecodable_line(path: Path, encoding: str) -> tuple[int, str] | None:
    """(line, reason) of the first line that does not decode, reading in binary lines."""
    line = 1
    with path.open("rb") as fh:
        for raw in fh:
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as exc:
                return line, f"byte 0x{raw[exc.start]:02x} at position {exc.start + 1} is not valid {encoding}"
            line += 1
    return None


def decode_error(path: Path, shown: str, src: SourceConfig, encoding: str, exc: UnicodeDecodeError) -> InputError:
    hint = ("if the file is Latin-1, Windows-1252 or UTF-16, set `encoding:`" if encoding in _UTF8
            else "check `encoding:`")
    name = "UTF-8" if encoding in _UTF8 else encoding
    # line-by-line decoding is exact for UTF-8 and single-byte encodings, not for UTF-16/32
    bad = _first_undecodable_line(path, encoding) if "16" not in encoding and "32" not in encoding else None
    if bad is None:
        return InputError(shown, f"not valid {name}: {exc.reason}; {hint} on source '{src.name}'")
    return InputError(shown, f"not valid {name}: {bad[1]}; {hint} on source '{src.name}'", line=bad[0])


def _check_utf8(path: Path, shown: str, src: SourceConfig) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as fh:
        try:
            while chunk := fh.read(_CHUNK):
                # ASCII is valid UTF-8, and `isascii` is far cheaper than decoding (most exports are ASCII)
                if not (chunk.isascii() and not decoder.getstate()[0]):
                    decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise decode_error(path, shown, src, "utf-8", exc) from None


def _transcode_to_utf8(path: Path, shown: str, src: SourceConfig, encoding: str, target: Path) -> None:
    """DuckDB reads only UTF-8, UTF-16 and Latin-1: other encodings (cp1252...) are converted first."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with path.open("rb") as fh, target.open("w", encoding="utf-8", newline="") as out:
        try:
            while chunk := fh.read(_CHUNK):
                out.write(decoder.decode(chunk))
            out.write(decoder.decode(b"", final=True))
        except UnicodeDecodeError as exc:
            raise decode_error(path, shown, src, encoding, exc) from None
        except UnicodeError as exc:  # e.g. UTF-16 without a byte-order mark: the codec cannot start
            raise InputError(shown, f"not valid {encoding}: {exc}; a file without a byte-order mark needs "
                             f"`encoding: {encoding}-le` or `{encoding}-be` on source '{src.name}'", line=1) from None


def _needs_line_tracking(path: Path) -> bool:
    """True when a record is not exactly one physical line: blank lines, quoted fields spanning
    lines, bare carriage returns. DuckDB skips the first and numbers records, not lines, so `_line` would drift."""
    carry = b""
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            buf = carry + chunk
            cut = buf.rfind(b"\n") + 1
            whole, carry = buf[:cut], buf[cut:]
            if _BLANK_FIRST_LINE.match(whole) or _BLANK_LINE.search(whole):
                return True
            if b'"' in whole and any(line.count(b'"') & 1 for line in whole.split(b"\n")):
                return True
            # a bare CR (inside quotes) ends a line for DuckDB; `in` is a fast scan, counting is not
            if b"\r" in whole and whole.count(b"\r") != whole.count(b"\r\n"):
                return True
    return carry.count(b'"') % 2 == 1


def _sniff_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t", "|")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def _read_csv_by_line(
    path: Path, shown: str, src: SourceConfig
) -> tuple[list[str], list[str], list[list[str | None]], list[int]]:
    """The slower exact reader: `_line` is the physical line where each record starts. Returns the
    header as the file names it, the header with repeated names made unique, rows and lines."""
    given: list[str] = []
    header: list[str] = []
    rows: list[list[str | None]] = []
    lines: list[int] = []
    # The csv module refuses fields over 128 KiB by default; DuckDB takes 2 MB lines, and a file must
    # not be readable on one path and not the other. Process-wide, so raised, never lowered.
    csv.field_size_limit(max(csv.field_size_limit(), _MAX_FIELD))
    with path.open(encoding="utf-8-sig", newline="") as fh:
        first = fh.readline()
        fh.seek(0)
        reader = csv.reader(fh, delimiter=src.delimiter or _sniff_delimiter(first))
        start = 1
        try:
            for row in reader:
                line, start = start, reader.line_num + 1
                # A blank or whitespace-only line is no record; `""` (one quoted empty field, read as
                # ['']) is one, as on the engine's reader.
                if not row or (len(row) == 1 and row[0] != "" and not row[0].strip()):
                    continue
                if not header:
                    given, header = [c.strip() for c in row], _unique_names(row)
                    continue
                if len(row) > len(header):
                    raise InputError(shown, f"row has {len(row)} fields, the header has {len(header)}", line=line)
                rows.append([c if c != "" else None for c in row])
                lines.append(line)
        except csv.Error as exc:
            raise InputError(shown, f"cannot be read as CSV: {exc}", line=reader.line_num) from None
    return given, header, rows, lines


def _repeated(names: list[str]) -> tuple[str, ...]:
    """`names` when one of them is repeated (RawFrame.header), else ()."""
    named = [n for n in names if n]
    return tuple(names) if len(set(named)) < len(named) else ()


def _unique_names(row: list[str]) -> list[str]:
    names: list[str] = []
    for i, cell in enumerate(row):
        name = cell.strip() or f"column{i}"
        base, n = name, 0
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def ensure_not_empty(path: Path, shown: str) -> None:
    if not path.exists():
        raise InputError(shown, "file not found")
    if path.stat().st_size == 0:
        raise InputError(shown, "file is empty (expected a header row)", line=1)


def file_read_error(shown: str, exc: Exception, kind: str = "CSV") -> InputError:
    """The engine's read errors are specific: keep their first line and the line they name."""
    first = str(exc).strip().splitlines()[0]
    at = _DUCKDB_LINE.search(str(exc))
    return InputError(shown, f"cannot be read as {kind}: {first}", line=int(at.group(1)) if at else None)


def _read_csv_on_engine(engine: Engine, path: Path, src: SourceConfig) -> tuple[ir.Table, list[str]] | None:
    """The fast path: the engine's CSV reader, when the file is regular, and the header's names as
    the file has them. None when the exact reader must decide: the engine refused the file, or a row
    is wider than the header (DuckDB would invent columns for it). The exact reader then reads it or
    names the line, the same on both paths."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        first = fh.readline()
    # The delimiter both readers use: DuckDB's own sniffer may pick another one from the data rows.
    delimiter = src.delimiter or _sniff_delimiter(first)
    try:
        table = engine.read_csv_text(path, encoding="utf-8", delimiter=delimiter)
    except Exception:
        return None
    given = [c.strip() for c in next(csv.reader([first], delimiter=delimiter), [])]
    return (table, given) if len(table.columns) - 1 == len(given) else None


def read_csv(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    """Read lazily where the engine can: the rows are parsed by the query that normalizes them, so a
    malformed row far into a big file surfaces there (see `pipeline.ingest`)."""
    ensure_not_empty(path, shown)
    encoding = codecs.lookup(src.encoding).name  # normalized: 'latin-1' -> 'iso8859-1', 'utf8' -> 'utf-8'
    with tempfile.TemporaryDirectory(prefix="tieout-csv-") as tmp:
        text_path = path
        if encoding in _UTF8:
            _check_utf8(path, shown, src)
        else:
            text_path = Path(tmp) / "utf8.csv"
            _transcode_to_utf8(path, shown, src, encoding, text_path)
        on_engine = None if _needs_line_tracking(text_path) else _read_csv_on_engine(engine, text_path, src)
        lazy_path: str | None = None
        if on_engine is None:
            given, header, rows, lines = _read_csv_by_line(text_path, shown, src)
            if not header:
                raise InputError(shown, "file has no header row", line=1)
            table = engine.from_arrow("raw", _text_table(header, rows, lines))
        else:
            table, given = on_engine
            if text_path != path:  # the transcoded copy goes with `tmp`: read it now
                table = engine.materialize("raw", table)
            else:
                lazy_path = str(path)
    cols = tuple(c for c in table.columns if c != "_line")
    return RawFrame(table, shown, cols, lazy_path=lazy_path, header=_repeated(given))


def read_parquet(engine: Engine, path: Path, src: SourceConfig, shown: str) -> RawFrame:
    ensure_not_empty(path, shown)
    try:
        table = engine.read_parquet_text(path)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(shown, f"cannot be read as Parquet: {first}") from None
    return RawFrame(table, shown, tuple(c for c in table.columns if c != "_line"), kind="Parquet")


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
    unique = _unique_names(header)  # a repeated name would overwrite the first column's cells
    return RawFrame(engine.from_arrow("raw", _text_table(unique, rows, lines)), shown, tuple(unique),
                    header=_repeated(header))


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
