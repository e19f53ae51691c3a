"""The rl stage: online policy optimisation of a reward with TRL's GRPO or RLOO trainer, with a KL
penalty (rl.beta) to the starting policy; cached, with a divergence guard (the RL counterpart of BoN)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Sequence

import datasets

from afd.config import RLAlgorithm
from afd.context import RunContext
from afd.models import apply_lora
from afd.policies import PolicyHandle, saved_policy
from afd.rewards import Reward
from afd.stability import DivergenceGuard
from afd.trainer_args import common_trainer_args


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
    name: str,
) -> PolicyHandle:
    """Optimise `reward` from `policy` (also the KL reference) on `prompts`; returns the new policy."""
    cfg = ctx.cfg
    rl = cfg.rl
    hparams = {
        "beta": rl.beta,
        "num_generations": rl.num_generations,
        "max_steps": rl.max_steps,
        "per_device_train_batch_size": rl.per_device_train_batch_size,
        "learning_rate": rl.learning_rate,
        "logging_steps": rl.logging_steps,
        "max_completion_length": cfg.sampling.max_new_tokens,
        "temperature": cfg.sampling.temperature,
        "top_p": cfg.sampling.top_p,
        **rl.trl_args,
    }
    spec = {
        "policy": policy.spec,
        "reward": reward_spec,
        "algorithm": rl.algorithm,
        "prompt_ids": list(prompt_ids),
        "hparams": hparams,
        "lora": cfg.model.lora,
        "seed": cfg.seed,
        "bf16": ctx.bf16,
        "device": ctx.device.type,
    }
    trained_here: dict = {}

    def build(out: Path) -> None:
        config_cls, trainer_cls = _trainer(rl.algorithm)
        model, tokenizer = policy.get()
        model = apply_lora(copy.deepcopy(model), cfg.model.lora)
        args = config_cls(
            **common_trainer_args(cfg.seed, out / "trainer", ctx.device, ctx.bf16, ctx.tracker.report_to),
            **hparams,
        )
        guard = DivergenceGuard(
            cfg.stability, f"RL ({name})", f"{policy.name} ({policy.path or 'the base model'})"
        )
        trainer = trainer_cls(
            model=model,
            reward_funcs=reward_function(reward),
            args=args,
            train_dataset=datasets.Dataset.from_dict({"prompt": [list(p) for p in prompts]}),
            processing_class=tokenizer,
            callbacks=[guard],
        )
        trainer.train()
        trained = trainer.model.merge_and_unload() if cfg.model.lora.enabled else trainer.model
        trained.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))
        trained_here["policy"] = (trained.eval(), tokenizer)

    entry = ctx.cache.get_or_build("rl", spec, build)
    for h in json.loads((entry / "train_log.json").read_text()):
        if "loss" in h:
            ctx.tracker.log({f"rl/{name}/{k}": v for k, v in h.items() if isinstance(v, (int, float))})
    handle = saved_policy(ctx, name, entry, {"rl": entry.name})
    if "policy" in trained_here:
        handle.preload(trained_here["policy"])
    return handle
