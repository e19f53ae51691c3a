"""The best_of_n stage: Best-of-N on one pool of M pi_SFT samples per test prompt, exact for every N
(afd/analysis/bon.py), plus the reward-extrapolation diagnostic (paper section 3, steps 5-6; ablation A6)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from afd.analysis.bon import bon_curve, curve_metrics, default_n_grid
from afd.analysis.plots import plot_curve, plot_histograms
from afd.config.stages import BestOfNSettings
from afd.runtime.context import RunContext
from afd.runtime.tracking import write_csv


def mean_win_vs_pool(golden: np.ndarray) -> np.ndarray:
    """w[p, i] = win rate (ties half) of sample i against a uniformly drawn *other* sample of its pool.

    Win rates are linear in the reference's distribution, so BoN on w is the exact expected win rate
    of the pick against an independent pi_SFT sample; leaving the sample itself out avoids a tie with
    itself that would pull every rate toward 1/2. O(M log M) per prompt through sorted ranks.
    """
    M = golden.shape[1]
    if M < 2:
        return np.full(golden.shape, 0.5)
    out = np.empty(golden.shape, dtype=np.float64)
    for p, g in enumerate(golden):
        s = np.sort(g)
        below = np.searchsorted(s, g, side="left")
        equal = np.searchsorted(s, g, side="right") - below - 1  # minus the sample itself
        out[p] = (below + 0.5 * equal) / (M - 1)
    return out


def best_of_n(
    ctx: RunContext,
    proxy: np.ndarray,
    golden: np.ndarray,
    demo_golden: np.ndarray,
    levels: Mapping[str, float],
    reward_name: str,
    settings: BestOfNSettings,
) -> tuple[dict[str, float], list[dict]]:
    """BoN metrics (`bon/golden@N`, `bon/winrate_vs_sft@N`, `bon/winrate_vs_demo@N`, `bon/kl_bound@N`),
    bon_curve.csv and bon_curve.png, and the curve as W&B rows keyed by `bon/n`."""
    grid = sorted(set(settings.n_grid)) if settings.n_grid else default_n_grid(proxy.shape[1])
    level = ctx.cfg.eval.ci_level
    rows = bon_curve(proxy, golden, grid, references={"demo": demo_golden}, level=level)
    vs_sft = bon_curve(proxy, mean_win_vs_pool(golden), grid, level=level)
    for row, w in zip(rows, vs_sft):
        row.update(
            {f"winrate_vs_sft_{k.split('_', 1)[1]}": v for k, v in w.items() if k.startswith("golden_")}
        )
    metrics = curve_metrics(rows)
    columns = list(rows[0])
    write_csv(ctx.output_dir / "bon_curve.csv", columns, [[r[c] for c in columns] for r in rows])
    ctx.tracker.log_table("bon/curve", columns, [[r[c] for c in columns] for r in rows])
    for r in rows:
        ctx.tracker.log(
            {
                "bon/n": r["n"],
                "bon/golden": r["golden_mean"],
                "bon/kl": r["kl_bound"],
                "bon/winrate_vs_sft": r["winrate_vs_sft_mean"],
                "bon/winrate_vs_demo": r["winrate_vs_demo_mean"],
            }
        )
    path = plot_curve(rows, levels, reward_name, level, ctx.output_dir / "bon_curve.png")
    ctx.tracker.log_image("bon/curve_plot", path)
    return metrics, rows


def extrapolation_diagnostic(
    ctx: RunContext, scores: Mapping[str, np.ndarray], reward_name: str
) -> dict[str, float]:
    """Proxy-reward distributions of pi_init samples, pi_SFT samples, demonstrations and BoN picks
    (paper ablation A6): `reward_scores/<group>/mean` and reward_scores.png."""
    metrics = {f"reward_scores/{k}/mean": float(np.mean(v)) for k, v in scores.items()}
    path = plot_histograms(scores, reward_name, ctx.output_dir / "reward_scores.png")
    ctx.tracker.log_image("reward_scores/hist", path)
    return metrics
