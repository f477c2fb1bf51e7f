"""Priority and routing (DESIGN §1 step 7): which tier a finding is in and why, who owns it, and
when it is escalated. Reads the `priority` and `routing` sections of tieout.yaml; pure functions
over a finding, its age and its customer's segment, no database and no sending.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tieout.config import PriorityConfig, RoutingConfig, RoutingRule
from tieout.findings import Finding
from tieout.lifecycle import Assessment
from tieout.money import format_minor, is_known_currency, major_to_minor_threshold


def priority_of(amount_minor: int, currency: str, age_days: int, cfg: PriorityConfig) -> tuple[str, str]:
    """(tier, reason): the first tier the finding reaches by money at risk or by age."""
    known = is_known_currency(currency)
    for tier in cfg.tiers:
        if tier.amount is not None and known:
            threshold = major_to_minor_threshold(tier.amount, currency)
            if amount_minor >= threshold:
                return tier.name, (f"{format_minor(amount_minor, currency)} at risk ≥ "
                                   f"{format_minor(threshold, currency)}")
        if tier.age_days is not None and age_days >= tier.age_days:
            return tier.name, f"open {age_days} days ≥ {tier.age_days}"
    return cfg.default, "below every tier"


def rule_matches(rule: RoutingRule, f: Finding, segment: str | None, age_days: int) -> bool:
    if rule.check is not None and rule.check != f.check:
        return False
    if rule.category is not None and rule.category != f.category:
        return False
    if rule.segment is not None and (segment or "").lower() != rule.segment.lower():
        return False
    if rule.currency is not None and rule.currency != f.currency:
        return False
    if rule.min_age_days is not None and age_days < rule.min_age_days:
        return False
    for bound, below in ((rule.min_amount, False), (rule.max_amount, True)):
        if bound is None:
            continue
        if not is_known_currency(f.currency):
            return False
        limit = major_to_minor_threshold(bound, f.currency)
        if (f.amount_at_risk >= limit) if below else (f.amount_at_risk < limit):
            return False
    return True


def route(f: Finding, segment: str | None, age_days: int, cfg: RoutingConfig) -> tuple[str | None, str | None]:
    """(team, owner) of the first matching rule; else the defaults (team: the category's team)."""
    for rule in cfg.rules:
        if rule_matches(rule, f, segment, age_days):
            return rule.team or cfg.default_team or f.owner, rule.owner or cfg.default_owner
    return cfg.default_team or f.owner, cfg.default_owner


def triage(priority: PriorityConfig, routing: RoutingConfig, segments: Mapping[str, str]
           ) -> Callable[[Finding, int], Assessment]:
    """The store's per-finding callback for a run: priority with its reason, routing, escalation."""

    def assess(f: Finding, age_days: int) -> Assessment:
        tier, reason = priority_of(f.amount_at_risk, f.currency, age_days, priority)
        team, owner = route(f, segments.get(f.customer_id or ""), age_days, routing)
        esc = routing.escalation
        escalate_to = esc.to if esc is not None and age_days > esc.after_days else None
        return Assessment(tier, reason, team, owner, escalate_to)

    return assess
