"""Custom rules on the check registry: built-in check parameters, SQL rules and Python rules, their
YAML test cases, and shadow mode. See docs/rules.md.

Rules are checks: they land in the same `Check` records as the built-in checks and run through the
same code (`execute.evaluate`). This package never stores findings nor prints.
"""

from tieout.rules.cases import Case, CaseResult, load_cases, run_case
from tieout.rules.execute import evaluate
from tieout.rules.failures import RuleError, RuleFailure
from tieout.rules.ruleset import RuleSet, load_rules
from tieout.rules.shadow import ShadowDiff, diff_shadow

__all__ = ["Case", "CaseResult", "RuleError", "RuleFailure", "RuleSet", "ShadowDiff", "diff_shadow", "evaluate",
           "load_cases", "load_rules", "run_case"]
