"""Shadow mode: a rule run on production data whose findings are compared with the active
version's (the open findings of the same check in the store), never stored, routed or notified.
The diff says which findings are new, gone and changed, and the money at risk of each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# What is compared between the active and the shadow version of a finding.
COMPARED = ("amount_at_risk", "severity", "expected", "actual")


@dataclass(frozen=True)
class FindingState:
    """A finding as both versions see it (from a `Finding` or a stored row)."""

    finding_id: str
    category: str
    subject: str
    currency: str
    amount_at_risk: int
    severity: str
    expected: str | None
    actual: str | None

    @classmethod
    def of(cls, f: Any) -> FindingState:
        return cls(f.finding_id, f.category, f.subject, f.currency, int(f.amount_at_risk), f.severity,
                   f.expected, f.actual)


@dataclass
class ShadowDiff:
    rule: str
    version: str
    findings: list[Any]  # the shadow version's findings (`Finding`), not stored
    new: list[FindingState] = field(default_factory=list)
    gone: list[FindingState] = field(default_factory=list)
    changed: list[tuple[FindingState, FindingState]] = field(default_factory=list)  # (active, shadow)
    unchanged: int = 0

    def money(self) -> dict[str, dict[str, int]]:
        """currency -> {'new', 'gone', 'changed'}: money at risk added, removed, and the net change."""
        out: dict[str, dict[str, int]] = {}

        def add(cur: str, key: str, amount: int) -> None:
            out.setdefault(cur, {"new": 0, "gone": 0, "changed": 0})[key] += amount

        for f in self.new:
            add(f.currency, "new", f.amount_at_risk)
        for f in self.gone:
            add(f.currency, "gone", f.amount_at_risk)
        for old, new in self.changed:
            add(new.currency, "changed", new.amount_at_risk - old.amount_at_risk)
        return dict(sorted(out.items()))

    def summary(self) -> dict[str, int]:
        return {"new": len(self.new), "gone": len(self.gone), "changed": len(self.changed),
                "unchanged": self.unchanged}


def diff_shadow(rule: str, version: str, shadow: Sequence[Any], active: Iterable[Any]) -> ShadowDiff:
    """Compare a shadow run's findings with the active version's open findings of the same rule."""
    before = {s.finding_id: s for s in map(FindingState.of, active)}
    after = {s.finding_id: s for s in map(FindingState.of, shadow)}
    d = ShadowDiff(rule, version, list(shadow))
    for fid, s in after.items():
        old = before.get(fid)
        if old is None:
            d.new.append(s)
        elif any(getattr(old, k) != getattr(s, k) for k in COMPARED):
            d.changed.append((old, s))
        else:
            d.unchanged += 1
    d.gone = [s for fid, s in before.items() if fid not in after]
    for part in (d.new, d.gone):
        part.sort(key=lambda s: (-s.amount_at_risk, s.finding_id))
    d.changed.sort(key=lambda p: (-abs(p[1].amount_at_risk - p[0].amount_at_risk), p[1].finding_id))
    return d
