"""Dependencies point one way (STYLE): the import graph of src/tieout, read with `ast`.

sources → model/normalize → quality → matching → checks → findings → metrics, reports → cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tieout

SRC = Path(__file__).parent.parent / "src" / "tieout"
# Rooms below the orchestration: they must never reach up to the run, the store or the front ends.
LOWER = ("tieout.sources", "tieout.model", "tieout.normalize", "tieout.quality", "tieout.matching",
         "tieout.checks")
UPPER = ("tieout.pipeline", "tieout.store", "tieout.cli", "tieout.reports")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; `from a import b` counts a and a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): imports_of(p) for p in sorted(SRC.rglob("*.py"))}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_is_read() -> None:
    assert "tieout.cli" in MODULES and "tieout.sources.stripe" in MODULES
    assert "tieout.errors" in MODULES["tieout.cli"]
    assert "tieout.sources.base" in MODULES["tieout.sources"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_entry_points_import_the_cli(module: str) -> None:
    if within(module, ("tieout.cli",)) or module == "tieout.__main__":
        return
    assert not any(within(i, ("tieout.cli",)) for i in MODULES[module]), module


@pytest.mark.parametrize("module", sorted(MODULES))
def test_nothing_imports_the_web_app(module: str) -> None:
    assert not any(within(i, ("tieout.web",)) for i in MODULES[module]), module


@pytest.mark.parametrize("module", sorted(m for m in MODULES if within(m, LOWER)))
def test_lower_rooms_never_import_the_run_the_store_or_the_front_ends(module: str) -> None:
    bad = sorted(i for i in MODULES[module] if within(i, UPPER))
    assert bad == [], f"{module} imports {bad}"


def test_import_tieout_is_light() -> None:
    import subprocess
    import sys

    code = ("import sys, tieout; assert tieout.__version__; "
            "print(sorted(m for m in ('ibis', 'duckdb', 'sqlalchemy', 'tieout.pipeline') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api_resolves() -> None:
    from tieout.config import load_config
    from tieout.pipeline import run

    assert tieout.load_config is load_config and tieout.run is run
    for name in tieout.__all__:
        assert getattr(tieout, name) is not None, name
    with pytest.raises(AttributeError):
        _ = tieout.no_such_name
