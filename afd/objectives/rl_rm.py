"""objective=rl_rm: policy optimisation (GRPO or RLOO, KL to pi_SFT) on a reward learned from
demonstrations or preferences: the RL counterpart of Best-of-N (paper ablation A9). The reward is the
cached one its own objective's Best-of-N uses; the policy ends with the policy evaluation."""

from __future__ import annotations

from typing import Callable

from afd.config import Objective
from afd.context import RunContext
from afd.objectives import bt_pref, irl, log_ratio, sanity
from afd.objectives.pipeline import Prepared, prepare
from afd.rewards import Reward
from afd.stages.policy_eval import evaluate_policy
from afd.stages.rl import train_rl

RewardBuilder = Callable[[RunContext, Prepared, Objective], tuple[Reward, dict[str, float]]]

REWARDS: dict[Objective, RewardBuilder] = {
    Objective.irl_init_sft: irl.build_reward,
    Objective.irl_init_demo: irl.build_reward,
    Objective.irl_sft_demo: irl.build_reward,
    Objective.bt_pref: bt_pref.build_reward,
    Objective.log_ratio: log_ratio.build_reward,
    Objective.length: sanity.build_reward,
    Objective.random: sanity.build_reward,
}


def run(ctx: RunContext) -> dict[str, float]:
    cfg = ctx.cfg
    prep = prepare(ctx)
    reward, reward_metrics = REWARDS[cfg.rl.reward](ctx, prep, cfg.rl.reward)
    split = prep.splits["rm"]
    path = getattr(reward, "path", None)
    reward_spec = {"reward": cfg.rl.reward, "rm": path.name if path else None, "sft": prep.sft.spec}
    name = f"rl_{cfg.rl.reward.value}"
    policy = train_rl(
        ctx, prep.sft, reward, reward_spec, list(split["prompt"]), list(split["prompt_id"]), name
    )
    metrics = evaluate_policy(ctx, prep, policy)
    metrics.update(reward_metrics)
    print(
        f"{name}: golden {metrics['eval/golden_mean']:.3f} "
        f"[{metrics['eval/golden_ci_low']:.3f}, {metrics['eval/golden_ci_high']:.3f}], "
        f"win vs pi_SFT {metrics['policy/winrate_vs_sft/mean']:.3f}, "
        f"KL to pi_SFT {metrics['policy/kl_to_sft/mean']:.3f}"
    )
    return metrics
