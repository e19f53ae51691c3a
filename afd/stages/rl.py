"""The rl stage: online policy optimisation of a reward with TRL's GRPO or RLOO trainer, with a KL
penalty (rl.beta) to a reference policy (by default the starting one); cached, with a divergence guard
(the RL counterpart of BoN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import datasets

from afd.config.stages import RLAlgorithm, RLSettings, StabilitySettings
from afd.models.policies import PolicyHandle
from afd.rewards.reward import Reward
from afd.runtime.context import RunContext
from afd.stages.policy_training import log_training, train_policy_stage
from afd.stages.stability import DivergenceGuard
from afd.stages.trainer_args import common_trainer_args


def reward_function(reward: Reward):
    """The reward as TRL's reward-function protocol: (prompts, completions) -> list of floats."""

    def afd_reward(prompts, completions, **_: Any) -> list[float]:
        # Conversational completions are [{"role": "assistant", "content": ...}].
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(x) for x in reward.score(list(prompts), texts)]

    afd_reward.__name__ = reward.name.replace(" ", "_")
    return afd_reward


def _trainer(algorithm: RLAlgorithm):
    import trl

    if algorithm is RLAlgorithm.grpo:
        return trl.GRPOConfig, trl.GRPOTrainer
    return trl.RLOOConfig, trl.RLOOTrainer


def train_rl(
    ctx: RunContext,
    policy: PolicyHandle,
    reward: Reward,
    reward_spec: dict[str, Any],
    prompts: Sequence[list],
    prompt_ids: Sequence[str],
    settings: RLSettings,
    stability: StabilitySettings,
    name: str,
    reference: PolicyHandle | None = None,
) -> PolicyHandle:
    """Optimise `reward` (identified by `reward_spec` in the cache key) from `policy` on `prompts` with a
    KL penalty to `reference` (default: `policy`); returns the new policy."""
    cfg = ctx.cfg
    hparams = {
        "beta": settings.beta,
        "num_generations": settings.num_generations,
        **settings.trainer.as_trainer_args(),
        # The policy samples its completions as every sampling stage does.
        "max_completion_length": cfg.sampling.max_new_tokens,
        "temperature": cfg.sampling.temperature,
        "top_p": cfg.sampling.top_p,
    }
    spec = {
        "policy": policy.spec,
        "reward": reward_spec,
        "algorithm": settings.algorithm,
        "prompt_ids": list(prompt_ids),
        "hparams": hparams,
        "seed": cfg.seed,
        "bf16": ctx.bf16,
        "device": ctx.device.type,
    }

    def make_trainer(model, tokenizer, out: Path):
        config_cls, trainer_cls = _trainer(settings.algorithm)
        args = config_cls(
            **common_trainer_args(ctx, out, settings.trainer),
            **hparams,
        )
        guard = DivergenceGuard(stability, f"RL ({name})", f"{policy.name} ({policy.path or 'pi_init'})")
        return trainer_cls(
            model=model,
            reward_funcs=reward_function(reward),
            args=args,
            train_dataset=datasets.Dataset.from_dict({"prompt": [list(p) for p in prompts]}),
            processing_class=tokenizer,
            callbacks=[guard],
        )

    trained = train_policy_stage(ctx, "rl", spec, policy, name, make_trainer, reference)
    log_training(ctx, trained, f"rl/{name}")
    return trained
