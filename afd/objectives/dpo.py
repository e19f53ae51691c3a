"""objective=dpo_demo | dpo_pref: direct alignment, the paper's comparison with DPO and SPIN (A1, A7).

dpo_demo: DPO with the demonstration as chosen and a policy sample as rejected; each of dpo.iterations
re-samples the rejected responses from the latest policy and references it (SPIN). dpo_pref: one round
of DPO on preference pairs (those bt_pref's reward model learns from). Both start from pi_SFT and end
with the policy evaluation: golden reward, win rate against pi_SFT and KL to pi_SFT.
"""

from __future__ import annotations

from afd.config import Objective, PolicyStart
from afd.context import RunContext
from afd.objectives.pipeline import Prepared, preference_data, prepare
from afd.policies import PolicyHandle
from afd.rm_data import RMPair
from afd.stages.dpo import train_dpo
from afd.stages.policy_eval import evaluate_policy
from afd.stages.sample import sample_split


def demo_pairs(ctx: RunContext, prep: Prepared, sampler: PolicyHandle) -> list[RMPair]:
    """Demonstration (chosen) vs one sample of `sampler` (rejected) for each prompt of dpo.split."""
    split_name = ctx.cfg.dpo.split.value
    split = prep.splits[split_name]
    rejected = sample_split(ctx, sampler, split_name, split, 1)
    return [
        RMPair(pid, list(prompt), demo, sample[0])
        for pid, prompt, demo, sample in zip(
            split["prompt_id"], split["prompt"], split["demonstration"], rejected
        )
    ]


def run_dpo_demo(ctx: RunContext, prep: Prepared) -> tuple[PolicyHandle, dict[str, float]]:
    d = ctx.cfg.dpo
    policy = prep.sft
    sampler = prep.sft if d.rejected_from is PolicyStart.sft else prep.base
    for i in range(d.iterations):
        policy = train_dpo(ctx, policy, demo_pairs(ctx, prep, sampler), f"dpo_demo_it{i + 1}")
        # SPIN: the next iteration's rejected responses come from the policy just trained.
        sampler = policy
    return policy, {"dpo/iterations": d.iterations}


def run_dpo_pref(ctx: RunContext, prep: Prepared) -> tuple[PolicyHandle, dict[str, float]]:
    prefs = preference_data(ctx, prep)
    return train_dpo(ctx, prep.sft, prefs.pairs, "dpo_pref"), {**prefs.metrics, "dpo/pairs": len(prefs.pairs)}


VARIANTS = {Objective.dpo_demo: run_dpo_demo, Objective.dpo_pref: run_dpo_pref}


def run(ctx: RunContext) -> dict[str, float]:
    prep = prepare(ctx)
    policy, extra = VARIANTS[ctx.cfg.objective.name](ctx, prep)
    metrics = evaluate_policy(ctx, prep, policy)
    metrics.update(extra)
    print(
        f"{policy.name}: golden {metrics['eval/golden_mean']:.3f} "
        f"[{metrics['eval/golden_ci_low']:.3f}, {metrics['eval/golden_ci_high']:.3f}], "
        f"win vs pi_SFT {metrics['policy/winrate_vs_sft/mean']:.3f}, "
        f"KL to pi_SFT {metrics['policy/kl_to_sft/mean']:.3f}"
    )
    return metrics
