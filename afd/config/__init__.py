"""Typed config schemas, registered in Hydra's ConfigStore by an explicit call from the entrypoint.

A wrong type, an unknown key or an unknown Enum value fails at compose time with the full key path; a
value out of range fails `validate`, before any side effect. The schemas: what every run has
(afd/config/run.py), the settings stages share (afd/config/stages.py), and each objective's and reward
kind's own (CONFIG in their modules in afd/objectives/ and afd/rewards/kinds/).
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from afd.config.checks import ConfigError, check_tree
from afd.config.run import RunConfig

__all__ = ["ConfigError", "RunConfig", "register_configs", "to_run_config", "validate"]


def register_configs() -> None:
    """The schemas into Hydra's ConfigStore: the run's (conf/config.yaml extends `run_schema`), each
    objective module's as `objective/<module>_schema` and each reward kind's as
    `objective/reward/<module>_schema`, which the yaml files of those groups extend."""
    from afd.objectives import objective_modules
    from afd.rewards import reward_kinds

    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for schema, module in objective_modules().items():
        cs.store(group="objective", name=f"{module.__name__.rsplit('.', 1)[1]}_schema", node=schema)
    for schema, module in reward_kinds().items():
        cs.store(group="objective/reward", name=f"{module.__name__.rsplit('.', 1)[1]}_schema", node=schema)


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Convert the composed config to typed dataclasses once; nothing below main sees a DictConfig."""
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def validate(cfg: RunConfig) -> None:
    """Every value in range (the fields' rules and the schemas' checks), and what the objective needs of
    the rest of the run (its run_checks, keyed from the root)."""
    check_tree(cfg)
    for key, ok, expected in cfg.objective.run_checks(cfg):
        if not ok:
            node = cfg
            for part in key.split("."):
                node = getattr(node, part)
            raise ConfigError(f"{key}={node!r}: expected {expected}")
