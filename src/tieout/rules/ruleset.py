"""The rules of one configuration: the built-in checks, installed plugins (entry points) and the
config's own SQL and Python rules, each with its mode and version; rules that failed to load are
kept as failures so the others still run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tieout.checks.registry import CHECKS, Check, CheckParams, check_params, validate_check_names
from tieout.config import Config
from tieout.errors import ConfigError
from tieout.rules.failures import RuleFailure
from tieout.rules.python import load_entry_points, load_python_rules
from tieout.rules.sql import load_sql_rule


@dataclass
class RuleSet:
    checks: dict[str, Check] = field(default_factory=dict)
    failures: list[RuleFailure] = field(default_factory=list)

    def add(self, check: Check, where: str) -> None:
        known = self.checks.get(check.name)
        if known is not None and known is not check:
            self.failures.append(RuleFailure(check.name, where, check.line or None,
                                             f"a rule named '{check.name}' is already defined at {known.where}"))
            return
        self.checks[check.name] = check

    def failed(self, name: str) -> RuleFailure | None:
        return next((f for f in self.failures if f.rule == name), None)

    def mode(self, cfg: Config | None, name: str, params: CheckParams, shadow: Iterable[str] = ()) -> str:
        """`run --shadow` first, then `checks.<name>.mode` in the config, then the rule's own mode."""
        if name in set(shadow):
            return "shadow"
        if cfg is not None and "mode" in (cfg.checks.get(name) or {}):
            return params.mode
        return self.checks[name].mode

    def audit(self, cfg: Config | None, shadow: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Each rule's version, kind, file and mode, for the run's audit record."""
        out = []
        for c in self.checks.values():
            params = check_params(cfg, c.name, c) if cfg is not None else c.params.model_validate({})
            out.append({"rule": c.name, "kind": c.kind, "version": c.version, "file": c.origin,
                        "mode": self.mode(cfg, c.name, params, shadow)})
        return out


def load_rules(cfg: Config | None, shadow: Iterable[str] = ()) -> RuleSet:
    """The rules `cfg` runs. Unknown `checks:` names and `--shadow` names are config errors."""
    rs = RuleSet()
    for c in CHECKS.values():
        if c.kind == "builtin":
            rs.add(c, c.origin)
    plugins, failures = load_entry_points()
    rs.failures.extend(failures)
    for c in plugins:
        rs.add(c, c.origin)
    if cfg is not None:
        for i, rule in enumerate(cfg.rules):
            if rule.python is not None:
                loaded = load_python_rules(rule.python, cfg.root)
                if isinstance(loaded, RuleFailure):
                    rs.failures.append(loaded)
                else:
                    for c in loaded:
                        rs.add(c, cfg.where(("rules", i, "python")))
                continue
            assert rule.sql is not None
            paths = sorted(cfg.root.glob(rule.sql)) if any(ch in rule.sql for ch in "*?[") else [cfg.resolve(rule.sql)]
            if not paths or not all(p.is_file() for p in paths):
                stem = rule.sql.rsplit("/", 1)[-1].split(".")[0]
                rs.failures.append(RuleFailure(stem, cfg.where(("rules", i, "sql")), None,
                                               f"no SQL rule file matches '{rule.sql}'"))
                continue
            for p in paths:
                if p.name.endswith(".cases.yaml"):
                    continue  # the test cases beside a rule
                loaded_sql = load_sql_rule(p, _shown(cfg, p))
                if isinstance(loaded_sql, RuleFailure):
                    rs.failures.append(loaded_sql)
                else:
                    rs.add(loaded_sql, _shown(cfg, p))
        validate_check_names(cfg, [*rs.checks, *(f.rule for f in rs.failures)])
    for name in shadow:
        if name not in rs.checks and rs.failed(name) is None:
            raise ConfigError(f"--shadow {name}: unknown rule (see `tieout rules list`)")
    return rs


def _shown(cfg: Config, path: Any) -> str:
    try:
        return str(path.relative_to(cfg.root))
    except ValueError:
        return str(path)
