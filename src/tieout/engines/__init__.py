"""Compute engines as plug-ins: one small module per engine, registered here by name.

Checks and matching are written once in Ibis; only reading raw files and a few functions Ibis does
not portably expose (lenient timestamp parsing, zone conversion) live in an engine module.
"""

from __future__ import annotations

from collections.abc import Callable

from tieout.engines.base import Engine

ENGINES: dict[str, Callable[[], Engine]] = {}


def register_engine(name: str) -> Callable[[Callable[[], Engine]], Callable[[], Engine]]:
    def deco(factory: Callable[[], Engine]) -> Callable[[], Engine]:
        ENGINES[name] = factory
        return factory

    return deco


def create_engine(name: str) -> Engine:
    """A fresh engine session by registry name ('duckdb')."""
    from tieout.engines import duckdb as _duckdb  # noqa: F401  (registers itself)

    try:
        factory = ENGINES[name]
    except KeyError:
        raise KeyError(f"unknown engine '{name}' (known: {', '.join(sorted(ENGINES))})") from None
    return factory()


__all__ = ["ENGINES", "Engine", "create_engine", "register_engine"]
