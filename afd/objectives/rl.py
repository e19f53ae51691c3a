"""objective: policy optimisation (GRPO or RLOO) from pi_SFT with a KL penalty to pi_SFT, on a reward
learned from demonstrations or preferences (paper ablation A9): the RL counterpart of Best-of-N. The
reward is the objective's `reward` node, the same (and the same cached) reward a Best-of-N objective with
that node uses; `objective/reward=init_demo` picks another. Ends with the policy evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING

from afd.config.checks import Problem
from afd.config.stages import PolicyEvalSettings, RLSettings, SFTSettings, StabilitySettings
from afd.rewards import build_reward

if TYPE_CHECKING:
    from afd.runtime.context import RunContext


@dataclass
class RLObjective:
    name: str = MISSING
    """The objective's name: its file in conf/objective/, the W&B job type and run names."""
    sft: SFTSettings = field(default_factory=SFTSettings)
    """The SFT stage: RL starts from, and is regularised towards, pi_SFT."""
    reward: Any = MISSING
    """The reward optimised (conf/objective/reward/)."""
    rl: RLSettings = field(default_factory=RLSettings)
    """The RL stage, on the align prompts."""
    stability: StabilitySettings = field(default_factory=StabilitySettings)
    """When training counts as diverged."""
    evaluation: PolicyEvalSettings = field(default_factory=PolicyEvalSettings)
    """How the final policy is judged against pi_SFT."""

    def run_checks(self, run) -> list[Problem]:
        return [("dataset.align_size", run.dataset.align_size >= 1, ">= 1: the reward and RL learn there")]


CONFIG = RLObjective


def run(ctx: RunContext, cfg: RLObjective) -> dict[str, float]:
    from afd.stages.policy_eval import evaluate_policy, print_policy
    from afd.stages.prepare import prepare
    from afd.stages.rl import train_rl

    prep = prepare(ctx, cfg.sft, cfg.evaluation.sft_samples_per_prompt, "align")
    built = build_reward(ctx, prep, cfg.reward)
    split = prep.splits["align"]
    policy = train_rl(
        ctx,
        prep.sft,
        built.reward,
        {**built.spec, "sft": prep.sft.spec},
        list(split["prompt"]),
        list(split["prompt_id"]),
        cfg.rl,
        cfg.stability,
        cfg.name,
    )
    metrics = evaluate_policy(ctx, prep, policy, cfg.evaluation)
    metrics.update(built.metrics)
    print_policy(policy.name, metrics)
    metrics.update(prep.metrics)
    return metrics
