"""The engine interface: what an engine module must provide beyond plain Ibis."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import ibis
import ibis.expr.types as ir
import pyarrow as pa


class Engine(Protocol):
    """A session on one compute engine. Tables it returns are Ibis tables on `con`."""

    name: str
    con: ibis.BaseBackend

    def read_csv_text(
        self, path: Path, *, encoding: str, delimiter: str | None, skip_rows: int = 0
    ) -> ir.Table:
        """All columns as strings, plus `_line` (1-based physical line of the row, header counted)."""
        ...

    def read_parquet_text(self, path: Path) -> ir.Table:
        """All columns cast to strings, plus `_line` (1-based row number + 1, as if a header)."""
        ...

    def from_arrow(self, name: str, table: pa.Table) -> ir.Table:
        """Register an Arrow table as a named engine table."""
        ...

    def materialize(self, name: str, expr: ir.Table, *, scratch: bool = False) -> ir.Table:
        """Compute `expr` once into a named table and return it. `scratch`: an intermediate result
        read a few times within one computation, kept as cheaply as the engine can (not compressed
        for storage)."""
        ...

    def parse_timestamp(self, text: ir.StringValue, fmt: str) -> ir.TimestampValue:
        """Parse with a strftime format; NULL (not an error) when the text does not match."""
        ...

    def local_to_utc(self, ts: ir.TimestampValue, zone: str) -> ir.TimestampValue:
        """Interpret a naive timestamp in `zone` and return it in UTC."""
        ...

    def adopt(self, tables: dict[str, ir.Table]) -> dict[str, ir.Table]:
        """The accepted canonical tables, made available where the checks run (an engine that
        ingests on another engine moves them here; one that ingests itself returns them)."""
        ...

    def close(self) -> None: ...
