"""The shared AfD pipeline of reward-guided objectives (paper section 3): sft -> sample -> reward ->
Best-of-N -> evaluate. Objectives differ only in the reward they hand to `finish`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np

from afd.config import RMInit, RMLoss
from afd.context import RunContext
from afd.data import load_splits, require_examples
from afd.policies import PolicyHandle, base_policy
from afd.rewards import Reward
from afd.rm_data import (
    RMPair,
    Source,
    flip_labels,
    preference_pairs,
    simulated_preference_pairs,
    split_heldout,
    variant_pairs,
)
from afd.stages.bon import best_of_n, extrapolation_diagnostic, score_pool
from afd.stages.evaluate import build_goldens, evaluate, format_table
from afd.stages.sample import sample_split
from afd.stages.sft import train_sft
from afd.stages.train_rm import heldout_accuracy, train_rm

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    splits: datasets.DatasetDict
    base: PolicyHandle
    sft: PolicyHandle
    goldens: dict[str, Reward]
    base_test: list[list[str]]
    """eval.samples_per_prompt pi_init samples per test prompt."""
    pool: list[list[str]]
    """bon.pool_size pi_SFT samples per test prompt: the Best-of-N pool and pi_SFT's evaluation."""


def prepare(ctx: RunContext) -> Prepared:
    cfg = ctx.cfg
    splits = load_splits(cfg.dataset)
    require_examples(splits, cfg.dataset, "train", "rm", "test")
    test = splits["test"]
    base = base_policy(ctx)
    base_test = sample_split(ctx, base, "test", test, cfg.eval.samples_per_prompt)
    sft = train_sft(ctx, base, splits["train"])
    pool = sample_split(ctx, sft, "test", test, cfg.bon.pool_size)
    return Prepared(splits, base, sft, build_goldens(ctx), base_test, pool)


def rm_responses(ctx: RunContext, prep: Prepared, source: Source) -> list[list[str]]:
    """Responses of `source` to the RM-training prompts (rm.samples_per_prompt samples, or the demo)."""
    split = prep.splits["rm"]
    if source is Source.demo:
        return [[d] for d in split["demonstration"]]
    policy = {Source.init: prep.base, Source.sft: prep.sft}[source]
    return sample_split(ctx, policy, "rm", split, ctx.cfg.rm.samples_per_prompt)


def variant_rm_pairs(ctx: RunContext, prep: Prepared, negative: Source, positive: Source) -> list[RMPair]:
    """The RM-training pairs of an IRL variant on the rm split (paper's "RM choice" table)."""
    split = prep.splits["rm"]
    responses = {s: rm_responses(ctx, prep, s) for s in (negative, positive)}
    return variant_pairs(list(split["prompt_id"]), list(split["prompt"]), responses, negative, positive)


@dataclass
class Preferences:
    pairs: list[RMPair]
    """Preference pairs as labelled (positive = chosen)."""
    truth: list[RMPair] | None
    """The same pairs with their true labels, when `pairs` carry noise: ordered by the golden reward
    (simulated annotator), or the human labels before rm.human_flip_rate flipped some."""
    metrics: dict[str, float]
    """rm/human_preferences, and rm/label_agreement when labels were simulated or flipped."""


def preference_data(ctx: RunContext, prep: Prepared) -> Preferences:
    """Preference pairs on the rm split: the dataset's human chosen/rejected (HH; rm.human_flip_rate of
    them flipped), or else a simulated annotator that prefers the golden-better of two pi_SFT samples
    and flips rm.flip_rate of the labels."""
    cfg = ctx.cfg
    split = prep.splits["rm"]
    ids, prompts = list(split["prompt_id"]), list(split["prompt"])
    chosen, rejected = list(split["chosen"]), list(split["rejected"])
    have = [c is not None and r is not None for c, r in zip(chosen, rejected)]
    if chosen and all(have):
        human = preference_pairs(ids, prompts, chosen, rejected)
        if cfg.rm.human_flip_rate == 0:
            return Preferences(human, None, {"rm/human_preferences": 1})
        noisy, kept = flip_labels(human, cfg.rm.human_flip_rate, cfg.seed)
        # Accuracy is then measured against the human labels, not the added noise.
        return Preferences(
            noisy, human, {"rm/human_preferences": 1, "rm/label_agreement": float(kept.mean())}
        )
    if cfg.rm.human_flip_rate > 0:
        log.warning(
            "rm.human_flip_rate=%s is ignored: the rm split has no human preferences", cfg.rm.human_flip_rate
        )
    if any(have):
        log.warning(
            "only %d of %d rm prompts have chosen/rejected: simulating all preferences", sum(have), len(have)
        )
    if cfg.rm.samples_per_prompt < 2:
        raise ValueError(
            f"simulated preferences need two pi_SFT samples per prompt: "
            f"rm.samples_per_prompt={cfg.rm.samples_per_prompt} must be >= 2"
        )
    two = [rs[:2] for rs in rm_responses(ctx, prep, Source.sft)]
    golden = next(iter(prep.goldens.values()))
    pairs, truthful = simulated_preference_pairs(
        ids, prompts, two, score_pool(golden, prompts, two), cfg.rm.flip_rate, cfg.seed
    )
    if not pairs:
        raise ValueError(
            f"the simulated annotator (golden {golden.name}) scored both pi_SFT samples equal for all "
            f"{len(two)} RM prompts, so there is no preference to learn; use a golden reward that "
            "separates them or more prompts (dataset.rm_size)"
        )
    truth = [
        p if ok else RMPair(p.prompt_id, p.prompt, p.negative, p.positive) for p, ok in zip(pairs, truthful)
    ]
    return Preferences(
        pairs, truth, {"rm/human_preferences": 0, "rm/label_agreement": float(truthful.mean())}
    )


def trained_reward(
    ctx: RunContext,
    prep: Prepared,
    pairs: list[RMPair],
    loss: RMLoss,
    extra: dict[str, Any],
    name: str,
    truth: list[RMPair] | None = None,
) -> tuple[Reward, dict[str, float]]:
    """A reward model trained on `pairs` (minus a held-out share of prompts), and its rm/* metrics.

    `truth`: the same pairs with their true labels when `pairs` carry noise (the simulated annotator,
    or flipped human labels); held-out accuracy is then measured against the truth, not the noise.
    """
    from afd.models import policy_source

    cfg = ctx.cfg
    train, heldout = split_heldout(pairs, cfg.rm.heldout_fraction, cfg.seed)
    if not train:
        raise ValueError(
            f"no reward-model training pairs left (dataset.rm_size={cfg.dataset.rm_size}, "
            f"rm.heldout_fraction={cfg.rm.heldout_fraction})"
        )
    if cfg.rm.init is RMInit.base:
        init_source, init_spec = policy_source(cfg.model, cfg.paths.cache_dir)[0], prep.base.spec
    else:
        init_source, init_spec = str(prep.sft.path), prep.sft.spec
    reward = train_rm(ctx, init_source, init_spec, train, loss, name)
    if truth is not None:
        heldout = split_heldout(truth, cfg.rm.heldout_fraction, cfg.seed)[1]
    metrics = {
        **heldout_accuracy(reward, heldout, pointwise=loss is RMLoss.bce),
        "rm/train_pairs": len(train),
        **extra,
    }
    return reward, metrics


def finish(ctx: RunContext, prep: Prepared, reward: Reward, extra: dict[str, Any]) -> dict[str, float]:
    """Golden evaluation of pi_init / pi_SFT / demonstrations, Best-of-N by `reward` on the pool,
    and the extrapolation diagnostic. `eval/golden_mean` is BoN at the largest N."""
    test = prep.splits["test"]
    prompts = list(test["prompt"])
    demos = list(test["demonstration"])
    metrics, golden_scores = evaluate(
        ctx, prep.goldens, test, {"base": prep.base_test, "sft": prep.pool}, final_policy="sft"
    )
    primary = next(iter(prep.goldens))
    proxy = score_pool(reward, prompts, prep.pool)
    levels = {p: metrics[f"eval/{primary}/{p}/mean"] for p in ["base", "sft", "demo"]}
    bon_metrics, rows = best_of_n(
        ctx, proxy, golden_scores[primary]["sft"], golden_scores[primary]["demo"][:, 0], levels, reward.name
    )
    picks = proxy.argmax(axis=1)
    diagnostic = extrapolation_diagnostic(
        ctx,
        {
            "base": score_pool(reward, prompts, prep.base_test),
            "sft": proxy,
            "demo": reward.score(prompts, demos),
            "bon": proxy[np.arange(len(picks)), picks],
        },
        reward.name,
    )
    top = rows[-1]
    metrics.update({**bon_metrics, **diagnostic, **extra})
    metrics.update(
        {
            "eval/golden_mean": top["golden_mean"],
            "eval/golden_ci_low": top["golden_ci_low"],
            "eval/golden_ci_high": top["golden_ci_high"],
            "bon/max_n": top["n"],
        }
    )
    print(format_table(metrics, list(prep.goldens), ["base", "sft", "demo"]))
    print(format_bon(rows, ctx.cfg.eval.ci_level))
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
