"""objective: direct alignment, the paper's comparison with DPO and SPIN (ablations A1, A7): DPO from
pi_SFT on pairs. With demonstrations as chosen and policy samples as rejected (dpo_demo), each of
dpo.iterations re-samples the rejected responses from the latest policy and references it (SPIN); with
preference pairs (dpo_pref), those bt_pref's reward model learns from. Ends with the policy evaluation:
golden reward, win rate against pi_SFT and KL to pi_SFT."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from omegaconf import MISSING

from afd.config.checks import Problem
from afd.config.stages import (
    DPOSettings,
    PairsConfig,
    PolicyEvalSettings,
    SFTSettings,
    Source,
    SplitName,
    StabilitySettings,
)

if TYPE_CHECKING:
    from afd.runtime.context import RunContext


@dataclass
class DPOObjective:
    name: str = MISSING
    """The objective's name: its file in conf/objective/, the W&B job type and run names."""
    sft: SFTSettings = field(default_factory=SFTSettings)
    """The SFT stage: DPO starts from pi_SFT."""
    pairs: PairsConfig = field(default_factory=PairsConfig)
    """The (rejected, chosen) pairs; negatives=policy samples the latest iterate (SPIN)."""
    dpo: DPOSettings = field(default_factory=DPOSettings)
    """The DPO stage."""
    stability: StabilitySettings = field(default_factory=StabilitySettings)
    """When training counts as diverged."""
    evaluation: PolicyEvalSettings = field(default_factory=PolicyEvalSettings)
    """How the final policy is judged against pi_SFT."""

    def run_checks(self, run) -> list[Problem]:
        return [
            ("dataset.align_size", run.dataset.align_size >= 1, ">= 1: preferences and rollouts live there"),
            (
                "objective.dpo.split",
                self.dpo.split is SplitName.align or not self.pairs.is_preference(),
                "align: preference pairs exist on the align split only",
            ),
            (
                "objective.pairs.positives",
                self.pairs.positives is not Source.policy,
                "not policy: the chosen side is demonstrations, pi_SFT samples or preferences",
            ),
        ]


CONFIG = DPOObjective


def run(ctx: RunContext, cfg: DPOObjective) -> dict[str, float]:
    from afd.stages.dpo import train_dpo
    from afd.stages.pairs import build_pairs
    from afd.stages.policy_eval import evaluate_policy, print_policy
    from afd.stages.prepare import prepare

    prep = prepare(ctx, cfg.sft, cfg.evaluation.sft_samples_per_prompt, "align")
    policy = prep.sft
    extra: dict[str, float] = {}
    for i in range(cfg.dpo.iterations):
        # SPIN: with negatives=policy, each iteration's rejected responses come from the latest policy.
        pairs = build_pairs(ctx, prep, cfg.pairs, cfg.dpo.split.value, policy=policy)
        name = cfg.name if cfg.dpo.iterations == 1 else f"{cfg.name}_it{i + 1}"
        policy = train_dpo(ctx, policy, pairs.pairs, cfg.dpo, cfg.stability, name)
        extra.update({**pairs.metrics, "dpo/pairs": len(pairs.pairs)})
    metrics = evaluate_policy(ctx, prep, policy, cfg.evaluation)
    metrics.update({**extra, "dpo/iterations": cfg.dpo.iterations})
    print_policy(policy.name, metrics)
    metrics.update(prep.metrics)
    return metrics
