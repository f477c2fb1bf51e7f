"""What a source format is: a reader that yields raw text rows with line numbers, plus the
default mapping of its columns onto a canonical table. Formats register in `FORMATS`.

Readers never parse values: normalization does, on the engine, so every bad value becomes a
quarantined row naming its file, line and column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import ibis.expr.types as ir

from tieout.config import SourceConfig
from tieout.engines.base import Engine

ISO_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%fZ",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


@dataclass(frozen=True)
class RawFrame:
    """Rows of one file as text: every column a string, plus `_line` (1-based, header counted)."""

    table: ir.Table
    file: str  # as shown to users: path relative to the workspace
    columns: tuple[str, ...]  # source column names, in file order, without `_line`
    # The file when the engine reads it lazily (a CSV view): its rows are parsed, and a malformed
    # row fails, only when they are first computed. None when the rows are already read.
    lazy_path: str | None = None
    # The header's names as the file has them, duplicates included, when the reader renamed
    # repeated names (`amount`, `amount_1`...); empty when every name is unique.
    header: tuple[str, ...] = ()
    # How the file is read, as error messages name it ("cannot be read as Parquet: ...").
    kind: str = "CSV"


Reader = Callable[[Engine, Path, SourceConfig, str], RawFrame]


@dataclass(frozen=True)
class SourceFormat:
    """A file layout: how to read it and how its columns map onto a canonical table by default."""

    name: str
    doc: str
    reader: Reader
    table: str | None = None
    system: str | None = None
    columns: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    constants: Mapping[str, str] = field(default_factory=dict)
    value_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    amount_unit: str = "major"
    date_formats: tuple[str, ...] = ISO_FORMATS


FORMATS: dict[str, SourceFormat] = {}


def register_format(fmt: SourceFormat) -> SourceFormat:
    if fmt.name in FORMATS:
        raise ValueError(f"source format '{fmt.name}' registered twice")
    FORMATS[fmt.name] = fmt
    return fmt
