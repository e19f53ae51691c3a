"""Confidence intervals for means over prompts: every reported number carries its uncertainty."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class MeanCI:
    mean: float
    ci_low: float
    ci_high: float
    n: int

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """Flat metric keys: `{prefix}/mean`, `/ci_low`, `/ci_high`, `/n`."""
        return {
            f"{prefix}/mean": self.mean,
            f"{prefix}/ci_low": self.ci_low,
            f"{prefix}/ci_high": self.ci_high,
            f"{prefix}/n": self.n,
        }


def mean_ci(values, level: float = 0.95) -> MeanCI:
    """Mean with a Student-t interval; values are one number per prompt (independent units)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(x.mean())
    if x.size == 1:
        return MeanCI(mean, float("nan"), float("nan"), 1)
    half = float(stats.t.ppf(0.5 + level / 2, df=x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return MeanCI(mean, mean - half, mean + half, int(x.size))
