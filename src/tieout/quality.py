"""The quality gate: every normalized row is accepted or quarantined with a reason, never dropped.

Quarantine reasons, in order: a value that does not parse (from `normalize`), an exact duplicate of
an earlier row, a second row with the same key. `read == accepted + quarantined` per file.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from tieout.engines.base import Engine
from tieout.model import LINEAGE_COLUMNS, Table

QUARANTINE_COLUMNS = ("table_name", "source", "file", "line", "column_name", "value", "reason")


@dataclass(frozen=True)
class FileCount:
    table: str
    source: str
    file: str
    read: int
    accepted: int
    quarantined: int


@dataclass(frozen=True)
class GateResult:
    accepted: ir.Table  # canonical columns + lineage
    quarantine: ir.Table  # QUARANTINE_COLUMNS
    counts: tuple[FileCount, ...]


def _quarantine_rows(t: ir.Table, table: Table, column: ir.Value, value: ir.Value, reason: ir.Value) -> ir.Table:
    return t.select(
        table_name=ibis.literal(table.name),
        source=t.source,
        file=t._file,
        line=t._line,
        column_name=column.cast(dt.string),
        value=value.cast(dt.string),
        reason=reason.cast(dt.string),
    )


def gate(engine: Engine, table: Table, frames: list[ir.Table]) -> GateResult:
    """Split normalized rows into accepted and quarantined for one canonical table.

    The normalized rows are stored tables already (`normalize`); a hash aggregate over the keys of the
    rows without a parse error finds the keys several rows share (nearly always few or none). Rows
    alone with their key are accepted as they are; only the rows that share a key go through the
    duplicate rules, so the windows over every column run on those alone. An exact duplicate always
    shares its key, so this is the same result as ranking every row. (A count per key as a window
    over every row cost ~8x the aggregate: it partitions the whole wide table by a text key.)
    """
    union = frames[0] if len(frames) == 1 else ibis.union(*frames, distinct=False)
    cols = list(table.column_names)
    t = union  # each frame is a stored table (`normalize`)
    good = t.filter(t._error_reason.isnull())
    per_key = good.group_by(list(table.key)).aggregate(_n=good.count())
    shared_keys = engine.materialize(f"shared_keys_{table.name}",
                                     per_key.filter(per_key._n > 1).select(*table.key), scratch=True)
    any_shared = bool(shared_keys.count().to_pyarrow().as_py())

    def same_key(rows: ir.Table) -> list[ir.BooleanValue]:
        # key columns are required, so a row without a parse error has them all; NULL-safe anyway
        return [rows[k].identical_to(shared_keys[k]) for k in table.key]

    bad = t.filter(t._error_reason.notnull())
    parse_q = _quarantine_rows(bad, table, bad._error_column, bad._error_value, bad._error_reason)

    shared = engine.materialize(
        f"shared_{table.name}", good.semi_join(shared_keys, same_key(good)) if any_shared else good.limit(0))
    order = [shared._file, shared._line]
    w_all = ibis.window(group_by=[shared[c] for c in cols], order_by=order)
    step1 = shared.mutate(_dup=ibis.row_number().over(w_all), _first=shared.source_ref.first().over(w_all))
    exact = step1.filter(step1._dup > 0)
    exact_q = _quarantine_rows(
        exact, table, ibis.literal("(row)"), ibis.literal(""), "exact duplicate of " + exact._first + " (dropped)"
    )

    unique = step1.filter(step1._dup == 0)
    w_key = ibis.window(group_by=[unique[c] for c in table.key], order_by=[unique._file, unique._line])
    step2 = unique.mutate(_krank=ibis.row_number().over(w_key), _kfirst=unique.source_ref.first().over(w_key))
    step2 = engine.materialize(f"dedup_{table.name}", step2)
    key_dups = step2.filter(step2._krank > 0)
    key_text = key_dups[table.key[0]].cast(dt.string)
    for k in table.key[1:]:
        key_text = key_text + "/" + key_dups[k].cast(dt.string)
    key_q = _quarantine_rows(
        key_dups,
        table,
        ibis.literal(table.key[-1]),
        key_text,
        f"duplicate {'/'.join(table.key)} '" + key_text + "' with different values (first at " + key_dups._kfirst + ")",
    )
    quarantine = ibis.union(parse_q, exact_q, key_q, distinct=False)
    quarantine = engine.materialize(f"quarantine_{table.name}", quarantine)
    # accepted: a view over the materialized rows (no copy of the big table)
    alone = (good.anti_join(shared_keys, same_key(good)) if any_shared else good).select(
        *cols, *LINEAGE_COLUMNS, "_file")
    kept = step2.filter(step2._krank == 0).select(*cols, *LINEAGE_COLUMNS, "_file")
    accepted_with_file = ibis.union(alone, kept, distinct=False)
    accepted = accepted_with_file.select(*cols, *LINEAGE_COLUMNS)
    counts = _counts(t, accepted_with_file, quarantine, table)
    return GateResult(accepted, quarantine, counts)


def _per_file(t: ir.Table, source: ir.Value, file: ir.Value) -> dict[tuple[str, str], int]:
    rows = t.group_by(source=source, file=file).aggregate(n=t.count()).to_pyarrow().to_pylist()
    return {(r["source"], r["file"]): int(r["n"]) for r in rows}


def _counts(t: ir.Table, kept: ir.Table, quarantine: ir.Table, table: Table) -> tuple[FileCount, ...]:
    """Counted independently from the three tables, so the invariant is a real check."""
    read = _per_file(t, t.source, t._file)
    acc = _per_file(kept, kept.source, kept._file)
    qua = _per_file(quarantine, quarantine.source, quarantine.file)
    return tuple(
        FileCount(table.name, src, file, n, acc.get((src, file), 0), qua.get((src, file), 0))
        for (src, file), n in sorted(read.items(), key=lambda kv: kv[0][1])
    )
