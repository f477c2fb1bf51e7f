"""Priority tiers (money or age, with the reason shown), routing rules (check, category, segment,
currency, amount, age → team and owner; a default owner) and escalation on SLA breach; malformed
rules are config errors naming the YAML line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import update

from tieout.config import Config, PriorityConfig, PriorityTier, parse_config
from tieout.errors import ConfigError
from tieout.routing import priority_of, route, triage
from tieout.store import FindingRow, Store

from .test_cli import _plain_wide_console, cli, write_workspace  # noqa: F401  (autouse fixture)
from .test_store import finding, record

ROUTING = """
routing:
  default_owner: triage-desk
  rules:
    - {category: price_mismatch, segment: enterprise, owner: ent-billing, team: billing-ops}
    - {check: chk, currency: EUR, min_amount: 500, owner: eu-finance}
    - {category: amount_mismatch, max_amount: 10, owner: small-fry}
    - {min_age_days: 10, owner: old-timers}
  escalation: {after_days: 3, to: head-of-billing}
"""


def _cfg(text: str) -> Config:
    return parse_config(text, Path("tieout.yaml"))


@pytest.mark.parametrize(("amount", "currency", "age", "expected"), [
    (10_000_000, "USD", 0, ("critical", "USD 100,000.00 at risk ≥ USD 100,000.00")),
    (9_999_999, "USD", 0, ("high", "USD 99,999.99 at risk ≥ USD 10,000.00")),
    (100, "USD", 5, ("critical", "open 5 days ≥ 5")),
    (100, "USD", 3, ("high", "open 3 days ≥ 3")),
    (100_000, "USD", 0, ("medium", "USD 1,000.00 at risk ≥ USD 1,000.00")),
    (50_000, "JPY", 0, ("high", "JPY 50,000 at risk ≥ JPY 10,000")),  # zero-decimal: minor units are yen
    (99_999, "USD", 0, ("low", "below every tier")),
])
def test_default_priority_tiers_and_their_reasons(amount: int, currency: str, age: int,
                                                  expected: tuple[str, str]) -> None:
    assert priority_of(amount, currency, age, PriorityConfig()) == expected


def test_priority_tiers_are_configurable() -> None:
    cfg = _cfg("priority:\n  default: routine\n  tiers:\n    - {name: urgent, amount: 50}\n")
    assert cfg.priority.tiers == [PriorityTier(name="urgent", amount=Decimal("50"))]
    assert priority_of(5000, "USD", 99, cfg.priority) == ("urgent", "USD 50.00 at risk ≥ USD 50.00")
    assert priority_of(4999, "USD", 99, cfg.priority) == ("routine", "below every tier")


def test_routing_rules_first_match_wins_else_the_default() -> None:
    r = _cfg(ROUTING).routing
    price = finding("INV-1/1", 100, category="price_mismatch", check="billing_subscriptions")
    assert route(price, "Enterprise", 0, r) == ("billing-ops", "ent-billing")
    assert route(price, "smb", 0, r) == ("billing-ops", "triage-desk")  # the category's team, the default owner
    assert route(finding("X", 50_000, currency="EUR"), None, 0, r)[1] == "eu-finance"
    assert route(finding("X", 49_999, currency="EUR"), None, 0, r)[1] == "triage-desk"
    assert route(finding("X", 999), None, 0, r)[1] == "small-fry"
    assert route(finding("X", 1000), None, 0, r)[1] == "triage-desk"
    assert route(finding("X", 1000), None, 10, r)[1] == "old-timers"
    assert route(finding("X", 1000, currency="XXX"), None, 0, r)[1] == "triage-desk"  # unknown currency: no amount


def test_escalation_after_the_sla(store: Store) -> None:
    cfg = _cfg(ROUTING)
    assess = triage(cfg.priority, cfg.routing, {})
    a, b = finding("A", 5000), finding("B", 5000)
    first = record(store, [a, b], triage=assess)
    assert first.lifecycle["escalated"] == 0
    assert store.finding(a.finding_id).owner == "triage-desk"
    with store.engine.begin() as conn:
        conn.execute(update(FindingRow).where(FindingRow.finding_id == a.finding_id)
                     .values(first_seen_at=datetime.now(UTC) - timedelta(days=4)))
    second = record(store, [a, b], triage=assess)
    assert second.lifecycle["escalated"] == 1
    row = store.finding(a.finding_id)
    assert (row.owner, row.priority, row.priority_reason) == ("head-of-billing", "high", "open 4 days ≥ 3")
    assert store.events(a.finding_id)[-1].note == ("escalated to head-of-billing: SLA breached (4 days, owner was "
                                                   "triage-desk)")
    assert record(store, [a, b], triage=assess).lifecycle["escalated"] == 0  # once


@pytest.mark.parametrize(("text", "message"), [
    ("routing:\n  rules:\n    - {category: price_mismach, owner: x}\n",
     "tieout.yaml:3: routing.rules.0.category: unknown category 'price_mismach' (see `tieout categories`)"),
    ("routing:\n  rules:\n    - owner: x\n      min_amount: -5\n",
     "tieout.yaml:4: routing.rules.0.min_amount: Input should be greater than or equal to 0"),
    ("routing:\n  rules:\n    - {owner: x, segmnt: smb}\n",
     "tieout.yaml:3: routing.rules.0.segmnt: unknown key (not allowed here)"),
    ("routing:\n  escalation: {to: boss}\n", "tieout.yaml:2: routing.escalation.after_days: Field required"),
    ("routing:\n  rules:\n    - {currency: EUROS, owner: x}\n",
     "tieout.yaml:3: routing.rules.0.currency: 'EUROS' is not an ISO-4217 currency code"),
])
def test_malformed_routing_rules_are_config_errors_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _cfg(text)
    assert str(err.value).splitlines()[0] == message


def test_a_run_routes_and_prioritises_its_findings(tmp_path: Path) -> None:
    extra = ("routing:\n  default_owner: ar-team\n  rules:\n    - {category: payment_unmatched, owner: cash-app}\n"
             "priority:\n  tiers:\n    - {name: critical, amount: 4000}\n")
    config = write_workspace(tmp_path / "ws", extra=extra)
    assert cli("run", "-c", config, "--fail-on", "never").code == 0
    out = cli("findings", "list", "-c", config).out
    assert "cash-app" in out and "ar-team" in out and "critical" in out
    bad = write_workspace(tmp_path / "bad", extra="routing:\n  rules:\n    - {category: nope, owner: x}\n")
    r = cli("run", "-c", bad)
    assert r.code == 2 and r.err.splitlines()[0].startswith("tieout.yaml:")
    assert "unknown category 'nope'" in r.err
    assert not (tmp_path / "bad" / "tieout.db").exists()  # nothing written
