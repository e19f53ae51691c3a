"""Objectives: each module of this package composes stages (afd/stages/) into one alignment objective
and declares its typed config, CONFIG; `run(ctx, cfg)` returns flat `/`-namespaced metrics. A
conf/objective/<name>.yaml selects a module by its schema (`<module>_schema`) and fills in what the
objective is made of. `objective_modules()` finds them (called from afd.config.register_configs and
when a run dispatches, never at import).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from types import ModuleType
from typing import Any


@lru_cache(maxsize=1)
def objective_modules() -> dict[type, ModuleType]:
    """{schema class: module} of every objective module in this package."""
    modules = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        modules[module.CONFIG] = module
    return modules


def run_objective(ctx, cfg: Any) -> dict[str, float]:
    """Run the objective `cfg` (an objective schema instance) describes."""
    return objective_modules()[type(cfg)].run(ctx, cfg)
