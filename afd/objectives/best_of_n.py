"""objective: a reward, then Best-of-N on a pool of pi_SFT samples (paper section 3): the IRL reward
models (irl_init_sft, irl_init_demo, irl_sft_demo), the Bradley-Terry preference baseline (bt_pref), the
closed-form log-ratio reward, the sanity rewards (length, random) and the golden oracle. What the reward
is, is data: the objective's `reward` node, one of the reward kinds of afd/rewards/."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, List, Optional

import numpy as np
from omegaconf import MISSING

from afd.config.checks import Problem, at_least
from afd.config.run import Choice, ModelConfig
from afd.config.stages import BestOfNSettings, RewardModelConfig, SFTSettings
from afd.rewards import build_reward
from afd.rewards.reward import score_pool

if TYPE_CHECKING:
    from afd.runtime.context import RunContext
    from afd.stages.prepare import Prepared


class JudgeOpponent(Choice):
    """What the Best-of-N pick is judged against."""

    sft = "sft"
    """A pi_SFT sample of the same pool (the first that is not the pick)."""
    demo = "demo"
    """The demonstration."""
    bt_pref = "bt_pref"
    """The pick of the Bradley-Terry preference reward model (`bt_reward`) on the same pool."""


JUDGE_TEMPLATE = (
    "Here is a conversation and two candidate replies to its last message.\n\n"
    "Conversation:\n{conversation}\n\n"
    "Reply A: {a}\n\n"
    "Reply B: {b}\n\n"
    "Which reply is better: more helpful, natural and pleasant? Answer with the letter A or B only."
)


@dataclass
class JudgeConfig:
    """A causal LM as pairwise judge of the Best-of-N pick (paper ablation A5)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The judge: any causal LM with a chat template (hub id or local path; the GPU experiment names a
    real instruct judge)."""
    against: List[JudgeOpponent] = field(
        default_factory=lambda: [JudgeOpponent.sft, JudgeOpponent.demo, JudgeOpponent.bt_pref]
    )
    """What the pick at the largest N is judged against, each in both orders."""
    template: str = JUDGE_TEMPLATE
    """The judging prompt; {conversation}, {a} and {b} are filled in. The verdict is whichever of the
    answer tokens A and B the judge finds more likely next."""
    margin: float = at_least(0.0, 0.0)
    """A preference smaller than this (in log-probability) counts as no preference."""
    batch_size: int = at_least(1, 8)
    """Judge prompts per forward pass."""
    bt_reward: Optional[RewardModelConfig] = None
    """The Bradley-Terry reward model whose pick is the bt_pref opponent (composed from the bt_pref
    reward preset)."""

    def checks(self) -> list[Problem]:
        needs_bt = JudgeOpponent.bt_pref in self.against
        return [
            ("bt_reward", not needs_bt or self.bt_reward is not None, "a reward model when against bt_pref")
        ]


@dataclass
class BestOfNObjective:
    name: str = MISSING
    """The objective's name: its file in conf/objective/, the W&B job type and run names."""
    sft: SFTSettings = field(default_factory=SFTSettings)
    """The SFT stage: pi_SFT draws the pool."""
    reward: Any = MISSING
    """The reward that picks the best of N (conf/objective/reward/: a learned reward model with its
    pairs, loss and weights; the log-ratio; length; random; the golden oracle)."""
    best_of_n: BestOfNSettings = field(default_factory=BestOfNSettings)
    """The pool and the values of N."""
    judge: Optional[JudgeConfig] = None
    """A model as pairwise judge of the pick at the largest N (conf/objective/judge/; A5); none by
    default."""

    def run_checks(self, run) -> list[Problem]:
        return [
            ("dataset.align_size", run.dataset.align_size >= 1, ">= 1: the reward learns on the align split")
        ]


CONFIG = BestOfNObjective


def run(ctx: RunContext, cfg: BestOfNObjective) -> dict[str, float]:
    """Golden evaluation of pi_init / pi_SFT / demonstrations, Best-of-N by the reward on the pool,
    and the extrapolation diagnostic. `eval/golden_mean` is BoN at the largest N."""
    from afd.stages.best_of_n import best_of_n, extrapolation_diagnostic
    from afd.stages.evaluate import evaluate, format_table
    from afd.stages.prepare import prepare

    prep = prepare(ctx, cfg.sft, cfg.best_of_n.pool_size, "align")
    built = build_reward(ctx, prep, cfg.reward)
    reward = built.reward
    test = prep.splits["test"]
    prompts, demos = list(test["prompt"]), list(test["demonstration"])
    metrics, golden = evaluate(
        ctx, prep.goldens, test, {"init": prep.init_test, "sft": prep.sft_test}, final_policy="sft"
    )
    primary = next(iter(prep.goldens))
    proxy = score_pool(reward, prompts, prep.sft_test)
    levels = {p: metrics[f"eval/{primary}/{p}/mean"] for p in ["init", "sft", "demo"]}
    bon_metrics, rows = best_of_n(
        ctx, proxy, golden[primary]["sft"], golden[primary]["demo"][:, 0], levels, reward.name, cfg.best_of_n
    )
    picks = proxy[np.arange(len(proxy)), proxy.argmax(axis=1)]
    diagnostic = extrapolation_diagnostic(
        ctx,
        {
            "init": score_pool(reward, prompts, prep.init_test),
            "sft": proxy,
            "demo": reward.score(prompts, demos),
            "bon": picks,
        },
        reward.name,
    )
    top = rows[-1]
    metrics.update({**bon_metrics, **diagnostic, **built.metrics})
    if cfg.judge is not None:
        metrics.update(judge_the_pick(ctx, prep, cfg.judge, proxy))
    metrics.update(
        {
            "eval/golden_mean": top["golden_mean"],
            "eval/golden_ci_low": top["golden_ci_low"],
            "eval/golden_ci_high": top["golden_ci_high"],
            "bon/max_n": top["n"],
        }
    )
    print(format_table(metrics, list(prep.goldens), ["init", "sft", "demo"]))
    print(format_bon(rows, ctx.cfg.eval.ci_level))
    metrics.update(prep.metrics)
    return metrics


def judge_the_pick(ctx: RunContext, prep: Prepared, cfg: JudgeConfig, proxy) -> dict[str, float]:
    """`judge/<opponent>/{win,tie,loss,winrate}` with CIs over test prompts, and judge.csv: the pick of
    the whole pool (the largest N) against each opponent, judged in both orders."""
    from afd.models.loading import load_policy
    from afd.runtime.tracking import write_csv
    from afd.stages.judge import judge_pairs

    test = prep.splits["test"]
    prompts = list(test["prompt"])
    pool = prep.sft_test
    picks = [rs[int(i)] for rs, i in zip(pool, proxy.argmax(axis=1))]
    opponents = {}
    for against in cfg.against:
        if against is JudgeOpponent.sft:
            # The first sample of the pool other than the pick: an independent pi_SFT sample.
            opponents[against] = [
                rs[1] if int(i) == 0 else rs[0] for rs, i in zip(pool, proxy.argmax(axis=1))
            ]
        elif against is JudgeOpponent.demo:
            opponents[against] = list(test["demonstration"])
        else:
            bt = build_reward(ctx, prep, cfg.bt_reward).reward
            opponents[against] = [
                rs[int(i)] for rs, i in zip(pool, score_pool(bt, prompts, pool).argmax(axis=1))
            ]
    model, tokenizer = load_policy(cfg.model, ctx.cfg.paths.cache_dir, ctx.device, ctx.dtype)
    metrics, rows = {}, {}
    for against, others in opponents.items():
        verdicts = judge_pairs(
            model, tokenizer, cfg.template, prompts, picks, others, cfg.batch_size, cfg.margin, ctx.bf16
        )
        metrics.update(verdicts.metrics(f"judge/{against.value}", ctx.cfg.eval.ci_level))
        rows[against.value] = verdicts.win - verdicts.loss
    write_csv(
        ctx.output_dir / "judge.csv",
        ["prompt_id", *(f"{a} (1 win, 0 tie, -1 loss)" for a in rows)],
        [[pid, *(float(v[i]) for v in rows.values())] for i, pid in enumerate(test["prompt_id"])],
    )
    return metrics


def format_bon(rows, level: float) -> str:
    ci = f"[{level:.0%} CI]"
    lines = [f"Best-of-N    N   golden {ci:<19}win vs sft  win vs demo  KL bound"]
    for r in rows:
        lines.append(
            f"{'':9}{r['n']:>5}   {r['golden_mean']:.3f} "
            f"[{r['golden_ci_low']:.3f}, {r['golden_ci_high']:.3f}]"
            f"   {r['winrate_vs_sft_mean']:>9.3f}  {r['winrate_vs_demo_mean']:>11.3f}  {r['kl_bound']:>8.3f}"
        )
    return "\n".join(lines)
