"""Matching records across systems, on the engine: exact keys, composite keys with tolerances
(one-to-one, deterministic), and one-to-many roll-ups. Every pair records how it was made.

This room pairs records; it never decides what a discrepancy is (that is the checks' job).
Its intermediate and final pairs are scratch tables (`Engine.materialize(scratch=True)`): written
compressed into DuckDB's file they cost about three times as much to write, and a run reads them a few times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from tieout.engines.base import Engine

PAIR_COLUMNS = ("left_id", "right_id", "method", "amount_diff", "seconds_diff")


@dataclass(frozen=True)
class Side:
    """One side of a match: the table, its id column, and the columns used to compare."""

    table: ir.Table
    id: str
    amount: str | None = None
    time: str | None = None
    equal: tuple[str, ...] = ()  # compared for equality with the other side's `equal`, in order


def exact_pairs(left: Side, right: Side, left_key: str, right_key: str, method: str) -> ir.Table:
    """Pairs where `left.left_key == right.right_key` (null keys never match). One-to-one is the
    caller's contract: keys are unique per side after the quality gate."""
    lt = left.table.filter(left.table[left_key].notnull())
    rt = right.table.filter(right.table[right_key].notnull())
    j = lt.join(rt, lt[left_key] == rt[right_key])
    return j.select(
        left_id=lt[left.id],
        right_id=rt[right.id],
        method=ibis.literal(method),
        amount_diff=_amount_diff(lt, rt, left, right),
        seconds_diff=_seconds_diff(lt, rt, left, right),
    )


def _amount_diff(lt: ir.Table, rt: ir.Table, left: Side, right: Side) -> ir.IntegerValue:
    if left.amount and right.amount:
        return (lt[left.amount].abs() - rt[right.amount].abs()).abs().cast(dt.int64)
    return ibis.literal(0, dt.int64)


def _seconds_diff(lt: ir.Table, rt: ir.Table, left: Side, right: Side) -> ir.IntegerValue:
    if left.time and right.time:
        return (_epoch(lt[left.time]) - _epoch(rt[right.time])).abs().cast(dt.int64)
    return ibis.literal(0, dt.int64)


def _epoch(value: ir.Value) -> ir.IntegerValue:
    if value.type().is_date():
        return value.cast(dt.Timestamp(timezone="UTC")).epoch_seconds()
    return value.epoch_seconds()


def composite_pairs(
    engine: Engine,
    left: Side,
    right: Side,
    *,
    amount_tolerance: int,
    window_days: int,
    method: str,
    max_rounds: int = 12,
) -> ir.Table:
    """One-to-one pairs by equal keys, amount within tolerance and time within a window.

    Candidates are ranked by (amount difference, time difference, id) on both sides; each round
    keeps the pairs that are each other's first choice and removes both records, so every record
    is used at most once and the result does not depend on row order.
    """
    assert left.amount and right.amount and left.time and right.time
    lt, rt = left.table, right.table
    preds = [lt[a] == rt[b] for a, b in zip(left.equal, right.equal, strict=True)]
    amount_diff = (lt[left.amount].abs() - rt[right.amount].abs()).abs()
    seconds_diff = (_epoch(lt[left.time]) - _epoch(rt[right.time])).abs()
    preds += [amount_diff <= amount_tolerance, seconds_diff <= window_days * 86400]
    candidates = lt.join(rt, preds).select(
        left_id=lt[left.id],
        right_id=rt[right.id],
        amount_diff=amount_diff.cast(dt.int64),
        seconds_diff=seconds_diff.cast(dt.int64),
    )
    candidates = engine.materialize("candidates", candidates, scratch=True)
    taken: list[ir.Table] = []
    remaining = candidates
    for _ in range(max_rounds):
        if remaining.count().to_pyarrow().as_py() == 0:
            break
        by_left = ibis.window(
            group_by=remaining.left_id,
            order_by=[remaining.amount_diff, remaining.seconds_diff, remaining.right_id],
        )
        by_right = ibis.window(
            group_by=remaining.right_id,
            order_by=[remaining.amount_diff, remaining.seconds_diff, remaining.left_id],
        )
        ranked = remaining.mutate(_rl=ibis.row_number().over(by_left), _rr=ibis.row_number().over(by_right))
        mutual = engine.materialize(
            "mutual", ranked.filter((ranked._rl == 0) & (ranked._rr == 0)).drop("_rl", "_rr"), scratch=True
        )
        taken.append(mutual)
        remaining = engine.materialize(
            "remaining",
            remaining.anti_join(mutual.select("left_id"), "left_id").anti_join(
                mutual.select("right_id"), "right_id"
            ),
            scratch=True,
        )
    if not taken:
        return candidates.limit(0).mutate(method=ibis.literal(method)).select(*PAIR_COLUMNS)
    pairs = taken[0] if len(taken) == 1 else ibis.union(*taken, distinct=False)
    return pairs.mutate(method=ibis.literal(method)).select(*PAIR_COLUMNS)


def match_one_to_one(
    engine: Engine,
    left: Side,
    right: Side,
    *,
    exact_keys: Sequence[tuple[str, str]],
    amount_tolerance: int,
    window_days: int,
    composite: bool = True,
) -> ir.Table:
    """Exact keys first (in order), then composite on what is left. Columns: PAIR_COLUMNS."""
    found: list[ir.Table] = []
    lrest, rrest = left.table, right.table
    for lkey, rkey in exact_keys:
        pairs = engine.materialize(
            "exact",
            exact_pairs(Side(lrest, left.id, left.amount, left.time, left.equal),
                        Side(rrest, right.id, right.amount, right.time, right.equal),
                        lkey, rkey, f"exact:{lkey}={rkey}"),
            scratch=True,
        )
        found.append(pairs)
        lrest = lrest.anti_join(pairs, lrest[left.id] == pairs.left_id)
        rrest = rrest.anti_join(pairs, rrest[right.id] == pairs.right_id)
    if composite:
        found.append(
            composite_pairs(
                engine,
                Side(lrest, left.id, left.amount, left.time, left.equal),
                Side(rrest, right.id, right.amount, right.time, right.equal),
                amount_tolerance=amount_tolerance,
                window_days=window_days,
                method=f"composite:{'+'.join(left.equal)}+amount±{amount_tolerance}+{window_days}d",
            )
        )
    out = found[0] if len(found) == 1 else ibis.union(*found, distinct=False)
    return engine.materialize("pairs", out, scratch=True)


def roll_up(children: ir.Table, parent_key: str, amount: str) -> ir.Table:
    """Many-to-one: children summed per parent (payments per invoice, transactions per payout)."""
    kept = children.filter(children[parent_key].notnull())
    return kept.group_by(parent_key).aggregate(
        child_total=kept[amount].sum().cast(dt.int64), children=kept.count()
    )
