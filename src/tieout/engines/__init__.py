"""Compute engines as plug-ins: one small module per engine, registered here by name.

Checks and matching are written once in Ibis; only reading raw files and a few functions Ibis does
not portably expose (lenient timestamp parsing, zone conversion) live in an engine module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from tieout.engines.base import Engine

if TYPE_CHECKING:
    from tieout.config import Config

# A factory takes the run's config (None: defaults) and reads its own engine's settings from it.
EngineFactory = Callable[["Config | None"], Engine]
ENGINES: dict[str, EngineFactory] = {}
# Engines shipped with tieout: name -> module that registers it when imported (imported on first use,
# so naming an engine in the config does not load its driver).
BUILTIN_ENGINES: dict[str, str] = {"duckdb": "tieout.engines.duckdb", "spark": "tieout.engines.spark"}


def register_engine(name: str) -> Callable[[EngineFactory], EngineFactory]:
    def deco(factory: EngineFactory) -> EngineFactory:
        ENGINES[name] = factory
        return factory

    return deco


def engine_names() -> list[str]:
    """Names a config may use for `engine:`, sorted."""
    return sorted(set(ENGINES) | set(BUILTIN_ENGINES))


def create_engine(name: str, cfg: Config | None = None) -> Engine:
    """A fresh engine session by registry name ('duckdb'), with the engine settings of `cfg`."""
    if name not in ENGINES and name in BUILTIN_ENGINES:
        importlib.import_module(BUILTIN_ENGINES[name])
    try:
        factory = ENGINES[name]
    except KeyError:
        raise KeyError(f"unknown engine '{name}' (known: {', '.join(engine_names())})") from None
    return factory(cfg)


__all__ = ["BUILTIN_ENGINES", "ENGINES", "Engine", "create_engine", "engine_names", "register_engine"]
