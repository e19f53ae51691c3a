"""The PNG figures a run writes next to its metrics (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: runs on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from afd.analysis.stats import MeanCI  # noqa: E402


def plot_golden(cis: Mapping[str, Mapping[str, MeanCI]], level: float, path: Path) -> Path:
    """Golden mean with its CI for each policy, one panel per golden reward."""
    fig, axes = plt.subplots(1, len(cis), figsize=(4 * len(cis), 3.2), squeeze=False)
    for ax, (g, per) in zip(axes[0], cis.items()):
        names = list(per)
        means = [per[p].mean for p in names]
        err = np.array([[per[p].mean - per[p].ci_low, per[p].ci_high - per[p].mean] for p in names]).T
        ax.bar(
            names,
            means,
            yerr=np.nan_to_num(err),
            capsize=4,
            color=["#999999", "#3b75af", "#e1812c", "#519e3e"][: len(names)],
        )
        ax.set_title(f"golden: {g} (mean, {level:.0%} CI)")
        ax.set_ylabel("golden reward")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curve(
    rows: Sequence[Mapping], levels: Mapping[str, float], reward_name: str, level: float, path: Path
) -> Path:
    """Golden reward of BoN vs N and vs the KL bound (base / SFT / demo as levels); win rates vs N."""
    n = np.array([r["n"] for r in rows])
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, x, xlabel in [
        (axes[0], n, "N (log scale)"),
        (axes[1], np.array([r["kl_bound"] for r in rows]), "KL(BoN || pi_SFT) bound"),
    ]:
        ax.plot(x, [r["golden_mean"] for r in rows], "o-", label=f"BoN ({reward_name})")
        ax.fill_between(
            x, [r["golden_ci_low"] for r in rows], [r["golden_ci_high"] for r in rows], alpha=0.25
        )
        for (name, value), color in zip(levels.items(), ["#999999", "#3b75af", "#e1812c"]):
            ax.axhline(value, ls="--", color=color, label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("golden reward")
    axes[0].set_xscale("log", base=2)
    axes[0].legend(fontsize=8)
    for ref in ["sft", "demo"]:
        axes[2].plot(n, [r[f"winrate_vs_{ref}_mean"] for r in rows], "o-", label=f"vs {ref}")
        axes[2].fill_between(
            n,
            [r[f"winrate_vs_{ref}_ci_low"] for r in rows],
            [r[f"winrate_vs_{ref}_ci_high"] for r in rows],
            alpha=0.2,
        )
    axes[2].axhline(0.5, ls=":", color="k")
    axes[2].set_xscale("log", base=2)
    axes[2].set_xlabel("N (log scale)")
    axes[2].set_ylabel("golden win rate of the pick")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"Best-of-N by {reward_name} (mean and {level:.0%} CI over test prompts)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_histograms(scores: Mapping[str, np.ndarray], reward_name: str, path: Path) -> Path:
    """Overlaid densities of the proxy reward per group (the extrapolation diagnostic)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for k, v in scores.items():
        ax.hist(np.ravel(v), bins=30, alpha=0.45, density=True, label=f"{k} (mean {np.mean(v):.2f})")
    ax.set_xlabel(f"proxy reward ({reward_name})")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
