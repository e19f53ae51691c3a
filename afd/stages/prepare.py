"""The start every objective shares (paper section 3, pipeline steps 1-2): the splits, pi_init and its
test samples, pi_SFT trained on the demonstrations, pi_SFT's test samples, and the golden rewards."""

from __future__ import annotations

from dataclasses import dataclass

import datasets

from afd.config.stages import SFTSettings
from afd.data import cached_splits, require_examples
from afd.models.policies import PolicyHandle, init_policy
from afd.rewards.golden import build_goldens
from afd.rewards.reward import Reward
from afd.runtime.context import RunContext
from afd.stages.sample import sample_split
from afd.stages.sft import sft_metrics, train_sft


@dataclass
class Prepared:
    splits: datasets.DatasetDict
    init: PolicyHandle
    """pi_init: the configured model before any training."""
    sft: PolicyHandle
    """pi_SFT."""
    goldens: dict[str, Reward]
    """The golden rewards, the primary first."""
    init_test: list[list[str]]
    """eval.samples_per_prompt pi_init samples per test prompt."""
    sft_test: list[list[str]]
    """pi_SFT samples per test prompt: the Best-of-N pool, and pi_SFT's evaluation."""
    metrics: dict[str, float]
    """What training pi_SFT measured (sft/final_loss, sft/validation_loss): every objective reports it."""

    @property
    def primary_golden(self) -> Reward:
        return next(iter(self.goldens.values()))


def prepare(ctx: RunContext, sft: SFTSettings, sft_samples: int, *needed_splits: str) -> Prepared:
    """Splits (the ones in `needed_splits` must not be empty), pi_init sampled on the test prompts
    before SFT (so one load serves both), pi_SFT, and `sft_samples` pi_SFT samples per test prompt."""
    cfg = ctx.cfg
    splits = cached_splits(cfg.dataset)
    require_examples(splits, cfg.dataset, "train", "test", *needed_splits)
    test = splits["test"]
    init = init_policy(ctx)
    init_test = sample_split(ctx, init, "test", test, cfg.eval.samples_per_prompt)
    pi_sft = train_sft(ctx, init, splits["train"], sft)
    sft_test = sample_split(ctx, pi_sft, "test", test, sft_samples)
    return Prepared(splits, init, pi_sft, build_goldens(ctx), init_test, sft_test, sft_metrics(pi_sft))
