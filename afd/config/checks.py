"""Range checks that live in the schemas: a field declares its rule where it is declared
(`learning_rate: float = positive(5e-5)`), a schema with rules across fields has a `checks()` method,
and `check_tree` walks a config and names the full key of the first value out of range.

Types, unknown keys and enum values are Hydra's and OmegaConf's to refuse at compose time; these are
the rules types cannot state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from afd.runtime.errors import UserError


class ConfigError(UserError):
    """A config value out of range; the message names its full key."""


@dataclass(frozen=True)
class Rule:
    ok: Callable[[Any], bool]
    expected: str


Problem = tuple[str, bool, str]
"""(key relative to the schema, whether it is fine, what was expected): what `checks()` yields."""


def ruled(default: Any, ok: Callable[[Any], bool], expected: str) -> Any:
    """A dataclass field with a default and a rule."""
    return field(default=default, metadata={"rule": Rule(ok, expected)})


def positive(default: float) -> Any:
    return ruled(default, lambda v: v > 0, "> 0")


def at_least(low: float, default: float) -> Any:
    return ruled(default, lambda v: v >= low, f">= {low}")


def rate(default: float) -> Any:
    """A probability: in [0, 1]."""
    return ruled(default, lambda v: 0 <= v <= 1, "in [0, 1]")


def steps_or_epochs(default: int = -1) -> Any:
    return ruled(default, lambda v: v == -1 or v >= 1, "-1 (use the epochs) or >= 1")


def _select(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def check_tree(node: Any, key: str = "") -> None:
    """Raise ConfigError naming the full key of the first value that breaks a field's rule or a schema's
    `checks()`; nested schemas and dicts of schemas are walked depth first."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            path = f"{key}.{f.name}" if key else f.name
            rule = f.metadata.get("rule")
            if rule is not None and not rule.ok(value):
                raise ConfigError(f"{path}={value!r}: expected {rule.expected}")
            check_tree(value, path)
        checks = getattr(type(node), "checks", None)
        if checks is not None:
            for name, ok, expected in checks(node):
                if not ok:
                    path = f"{key}.{name}" if key else name
                    raise ConfigError(f"{path}={_select(node, name)!r}: expected {expected}")
    elif isinstance(node, dict):
        for name, value in node.items():
            check_tree(value, f"{key}.{name}" if key else str(name))


def trl_arg_problems(args: dict[str, Any], trl_config: str, where: str = "trl_args") -> Iterator[Problem]:
    """`trl_args` must name fields of the TRL (or transformers) config they are passed to, and none afd
    sets itself."""
    import transformers
    import trl

    known = {
        f.name
        for f in dataclasses.fields(getattr(trl, trl_config, None) or getattr(transformers, trl_config))
    }
    for name in args:
        yield f"{where}.{name}", name in known, f"a field of trl.{trl_config}"
        yield f"{where}.{name}", name not in AFD_SET_TRAINER_ARGS, "an argument afd does not set itself"


def all_of(*problems: Iterable[Problem]) -> Iterator[Problem]:
    for group in problems:
        yield from group


# Set by afd itself from typed knobs; passing them again through trl_args would be ambiguous.
AFD_SET_TRAINER_ARGS = frozenset(
    {
        "output_dir",
        "seed",
        "data_seed",
        "use_cpu",
        "bf16",
        "fp16",
        "report_to",
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "logging_steps",
        "save_steps",
        "save_strategy",
        "activation_checkpointing",
        "gradient_checkpointing",
        "save_total_limit",
        "max_length",
        "remove_unused_columns",
        "train_sampling_strategy",
        "eval_strategy",
        "per_device_eval_batch_size",
    }
)
