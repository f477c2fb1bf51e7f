"""tieout: revenue assurance. Ties out the payment gateway, billing, subscriptions and the general
ledger, and returns findings ranked by money at risk with the evidence from each system.

The public API is what `__all__` names; everything else may move. Names are imported on first use,
so `import tieout` (and `tieout --help`) stays light.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tieout.categories import CATEGORIES
    from tieout.checks import CHECKS
    from tieout.config import Config, load_config
    from tieout.findings import Finding
    from tieout.model import TABLES
    from tieout.pipeline import RunResult, run

try:
    __version__ = version("tieout")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# public name -> module that defines it
_PUBLIC = {
    "load_config": "tieout.config",
    "Config": "tieout.config",
    "run": "tieout.pipeline",
    "RunResult": "tieout.pipeline",
    "Finding": "tieout.findings",
    "CHECKS": "tieout.checks",
    "CATEGORIES": "tieout.categories",
    "TABLES": "tieout.model",
}

__all__ = ["CATEGORIES", "CHECKS", "TABLES", "Config", "Finding", "RunResult", "__version__", "load_config", "run"]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'tieout' has no attribute '{name}'")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
