"""Pooling jobs into variants: the mean and confidence interval of every metric across seeds (a single
seed keeps its own interval over prompts), with proportions kept inside [0, 1]."""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from typing import Sequence

from afd.analysis.jobs import Job
from afd.analysis.stats import MeanCI, mean_ci

BON_KEY = re.compile(r"^bon/golden@(\d+)$")
# The extrapolation diagnostic (afd/stages/best_of_n.py): the proxy reward's mean score of each group.
REWARD_SCORE_GROUPS = {"init": "init", "sft": "SFT", "demo": "demos", "bon": "BoN pick"}
REWARD_SCORE_KEY = "reward_scores/{}/mean"


def _own_ci(metrics: dict[str, float], key: str, value: float) -> MeanCI:
    """A single job's value with its own CI over prompts, when the job reported one."""
    stem = key.removesuffix("/mean").removesuffix("_mean")
    for low, high in [
        (f"{key}_ci_low", f"{key}_ci_high"),
        (f"{stem}_ci_low", f"{stem}_ci_high"),
        (f"{stem}/ci_low", f"{stem}/ci_high"),
    ]:
        if low in metrics and high in metrics:
            return MeanCI(value, metrics[low], metrics[high], 1)
    return MeanCI(value, float("nan"), float("nan"), 1)


def summarise(jobs: Sequence[Job], level: float = 0.95) -> dict[str, dict[str, MeanCI]]:
    """summary[variant][metric] = mean and CI across seeds (one value per job); a variant with a
    single seed keeps that job's own CI over prompts (n=1 marks it)."""
    by_variant: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        by_variant[job.variant or job.objective].append(job)
    summary = {}
    for variant, group in by_variant.items():
        keys = set.intersection(*(set(j.metrics) for j in group))
        numeric = [k for k in sorted(keys) if all(isinstance(j.metrics[k], (int, float)) for j in group)]
        if len(group) == 1:
            summary[variant] = {k: _own_ci(group[0].metrics, k, group[0].metrics[k]) for k in numeric}
        else:
            summary[variant] = {
                k: _bounded(k, mean_ci([j.metrics[k] for j in group], level)) for k in numeric
            }
    return summary


def is_proportion(key: str) -> bool:
    """Accuracies, win rates and label agreements: proportions in [0, 1]."""
    return any(word in key for word in ("accuracy", "winrate", "agreement"))


def _bounded(key: str, ci: MeanCI) -> MeanCI:
    """A t-interval across a few seeds can leave [0, 1] for a proportion (two seeds at 0.99 and 1.0 reach
    1.007): clip it to the values a proportion can take."""
    if not is_proportion(key):
        return ci
    return dataclasses.replace(ci, ci_low=max(0.0, ci.ci_low), ci_high=min(1.0, ci.ci_high))


def n_grid(summary: dict[str, dict[str, MeanCI]]) -> list[int]:
    return sorted({int(m.group(1)) for per in summary.values() for k in per if (m := BON_KEY.match(k))})


def reward_score_variants(summary: dict[str, dict[str, MeanCI]]) -> dict[str, dict[str, MeanCI]]:
    """The variants that ran the extrapolation diagnostic (reward-model objectives; sft, dpo and rl
    have no proxy RM to score with), each with its RM-score means by group."""
    return {
        variant: {
            g: per[REWARD_SCORE_KEY.format(g)]
            for g in REWARD_SCORE_GROUPS
            if REWARD_SCORE_KEY.format(g) in per
        }
        for variant, per in summary.items()
        if any(REWARD_SCORE_KEY.format(g) in per for g in REWARD_SCORE_GROUPS)
    }
