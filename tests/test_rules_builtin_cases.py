"""The built-in checks' own cases (rules/cases): every case passes through `tieout rules test`, and
together they cover every category of each check with at least one look-alike. In a file of its own so
that, on two pytest-xdist workers (`--dist loadfile`), this long test runs beside the rules e2e tests."""

from __future__ import annotations

from tieout.checks import CHECKS

from .test_cli import _plain_wide_console, cli  # noqa: F401  (the autouse fixture applies here too)
from .test_rules import _forget_rule_modules  # noqa: F401  (autouse: rule modules leave the registry as it was)


def test_built_in_checks_pass_their_own_cases() -> None:
    r = cli("rules", "test")
    assert r.code == 0, r.out
    for name in ("gateway_billing", "billing_subscriptions", "gl_cash"):
        assert r.out.count(f"PASS {name}:") >= 3, name
    assert "FAIL" not in r.out


def test_built_in_cases_cover_every_category_and_a_look_alike() -> None:
    from tieout.rules import load_cases

    for check in CHECKS.values():
        if check.kind != "builtin":
            continue
        cases = load_cases(check)
        covered = {e.get("category") for c in cases for e in c.expect}
        assert covered == set(check.categories), (check.name, set(check.categories) - covered)
        assert any(not c.expect for c in cases), f"{check.name} has no look-alike case"
