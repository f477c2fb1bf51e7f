"""Python rules: modules whose `@register_check` functions are rules, the same interface as the
built-in checks. Loaded from the `tieout.checks` entry point group (installed plugins) or from a
module named in `tieout.yaml` (an importable name or a .py file beside the config).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from tieout.categories import CATEGORIES
from tieout.checks.registry import CHECKS, Check, content_version
from tieout.rules.failures import RuleFailure, first_line, line_in

ENTRY_POINT_GROUP = "tieout.checks"


def _checks_of(module: str) -> list[Check]:
    return [c for c in CHECKS.values() if c.module == module]


def _vetted(module: str, shown: str) -> list[Check] | RuleFailure:
    found = _checks_of(module)
    if not found:
        return RuleFailure(Path(shown).stem, shown, None, "registers no check (decorate a function with "
                           "@tieout.checks.register_check)")
    for c in found:
        unknown = [k for k in c.categories if k not in CATEGORIES]
        if unknown:
            return RuleFailure(c.name, c.origin or shown, c.line, f"unknown category '{unknown[0]}' "
                               "(see `tieout categories`)")
    return found


def _import_file(path: Path, shown: str) -> ModuleType | RuleFailure:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return RuleFailure(path.stem, shown, None, f"cannot read the rule module ({exc.strerror or exc})")
    # The content hash in the name: an edited file is a new module that replaces its own checks.
    name = f"tieout_rule_{path.stem}_{content_version(data)}"
    if name in sys.modules and _checks_of(name):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        return RuleFailure(path.stem, shown, None, "not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        return RuleFailure(path.stem, shown, line_in(exc, str(path), None), f"import failed: {first_line(exc)}")
    return module


def load_python_rules(spec: str, root: Path) -> list[Check] | RuleFailure:
    """The checks a rule module registers: `spec` is a .py path (relative to `root`) or a module name."""
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec) if Path(spec).is_absolute() else root / spec
        module = _import_file(path.resolve(), spec)
        if isinstance(module, RuleFailure):
            return module
        return _vetted(module.__name__, str(path))
    try:
        mod = importlib.import_module(spec)
    except Exception as exc:
        return RuleFailure(spec.rsplit(".", 1)[-1], spec, line_in(exc, getattr(exc, "filename", "") or "", None),
                           f"import failed: {first_line(exc)}")
    return _vetted(mod.__name__, getattr(mod, "__file__", None) or spec)


def load_entry_points() -> tuple[list[Check], list[RuleFailure]]:
    """Checks of installed plugins (entry point group `tieout.checks`: a module or a function)."""
    checks: list[Check] = []
    failures: list[RuleFailure] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:
            failures.append(RuleFailure(ep.name, f"entry point {ep.value}", None, f"import failed: {first_line(exc)}"))
            continue
        result = _vetted(ep.value.split(":")[0], f"entry point {ep.value}")
        if isinstance(result, RuleFailure):
            failures.append(result)
        else:
            checks.extend(c for c in result if c not in checks)
    return checks, failures
