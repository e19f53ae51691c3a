"""Drawing the (negative, positive) pairs a config names (paper section 3, step 3): samples of pi_init,
pi_SFT or the policy being trained, demonstrations, or preference pairs (the dataset's human ones, or a
simulated annotator's), matched by prompt on a split."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from afd.config.stages import PairsConfig, Source
from afd.data.pairs import (
    Pair,
    flip_labels,
    matched_pairs,
    preference_pairs,
    simulated_preference_pairs,
)
from afd.models.policies import PolicyHandle
from afd.rewards.reward import score_pool
from afd.runtime.context import RunContext
from afd.runtime.errors import UserError
from afd.stages.prepare import Prepared
from afd.stages.sample import sample_split

log = logging.getLogger(__name__)


@dataclass
class Pairs:
    pairs: list[Pair]
    """As labelled (positive = label 1 = chosen)."""
    truth: list[Pair] | None
    """The same pairs with their true labels when `pairs` carry noise (flipped human labels, or the
    simulated annotator's flips, whose truth is the golden reward's order)."""
    metrics: dict[str, float]
    """reward/human_preferences and reward/label_agreement for preference pairs."""


def responses(
    ctx: RunContext,
    prep: Prepared,
    source: Source,
    split_name: str,
    n: int,
    policy: PolicyHandle | None = None,
) -> list[list[str]]:
    """Responses of `source` to each prompt of the split: n samples of a policy, or the demonstration."""
    split = prep.splits[split_name]
    if source is Source.demo:
        return [[d] for d in split["demonstration"]]
    handle = {Source.init: prep.init, Source.sft: prep.sft, Source.policy: policy or prep.sft}[source]
    return sample_split(ctx, handle, split_name, split, n)


def build_pairs(
    ctx: RunContext,
    prep: Prepared,
    cfg: PairsConfig,
    split_name: str = "align",
    policy: PolicyHandle | None = None,
) -> Pairs:
    """The pairs `cfg` names on a split; `policy` is what Source.policy samples (default pi_SFT)."""
    if cfg.is_preference():
        if split_name != "align":
            raise UserError(f"preference pairs exist on the align split only, not on {split_name}")
        return _preferences(ctx, prep, cfg)
    split = prep.splits[split_name]
    sides = [
        responses(ctx, prep, s, split_name, cfg.samples_per_prompt, policy)
        for s in (cfg.negatives, cfg.positives)
    ]
    return Pairs(matched_pairs(list(split["prompt_id"]), list(split["prompt"]), *sides), None, {})


def _preferences(ctx: RunContext, prep: Prepared, cfg: PairsConfig) -> Pairs:
    """The dataset's human chosen/rejected (HH; noise.human_flip_rate of them flipped), or else a
    simulated annotator that prefers the golden-better of two pi_SFT samples and flips noise.flip_rate
    of the labels."""
    split = prep.splits["align"]
    ids, prompts = list(split["prompt_id"]), list(split["prompt"])
    chosen, rejected = list(split["chosen"]), list(split["rejected"])
    flip_rate = cfg.noise.flip_rate if cfg.noise else 0.0
    human_flip_rate = cfg.noise.human_flip_rate if cfg.noise else 0.0
    have = [c is not None and r is not None for c, r in zip(chosen, rejected)]
    if chosen and all(have):
        human = preference_pairs(ids, prompts, chosen, rejected)
        if human_flip_rate == 0:
            return Pairs(human, None, {"reward/human_preferences": 1})
        noisy, kept = flip_labels(human, human_flip_rate, ctx.cfg.seed)
        # Accuracy is then measured against the human labels, not the added noise.
        return Pairs(
            noisy, human, {"reward/human_preferences": 1, "reward/label_agreement": float(kept.mean())}
        )
    if human_flip_rate > 0:
        log.warning(
            "noise.human_flip_rate=%s is ignored: the align split has no human preferences", human_flip_rate
        )
    if any(have):
        log.warning(
            "only %d of %d align prompts have chosen/rejected: simulating all preferences",
            sum(have),
            len(have),
        )
    samples = responses(ctx, prep, Source.sft, "align", cfg.samples_per_prompt)
    golden = prep.primary_golden
    pairs, truthful = simulated_preference_pairs(
        ids, prompts, samples, score_pool(golden, prompts, samples), flip_rate, ctx.cfg.seed
    )
    if not pairs:
        raise UserError(
            f"the simulated annotator (golden {golden.name}) scored every pair of pi_SFT samples equal "
            f"on all {len(samples)} align prompts, so there is no preference to learn; use a golden "
            "reward that separates them or more prompts (dataset.align_size)"
        )
    truth = [p if ok else p.swapped() for p, ok in zip(pairs, truthful)]
    return Pairs(
        pairs, truth, {"reward/human_preferences": 0, "reward/label_agreement": float(truthful.mean())}
    )
