"""The figures of `afd report`: golden reward and win rate against N per variant, golden reward against
KL to pi_SFT (Best-of-N curves and trained policies together), and the reward-score diagnostic."""

from __future__ import annotations

from pathlib import Path

from afd.analysis.stats import MeanCI
from afd.analysis.summary import REWARD_SCORE_GROUPS, n_grid, reward_score_variants


def plot(summary: dict[str, dict[str, MeanCI]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = n_grid(summary)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for variant, per in summary.items():
        for ax, key in [(axes[0], "bon/golden@{}"), (axes[1], "bon/winrate_vs_sft@{}")]:
            points = [(n, per[key.format(n)]) for n in grid if key.format(n) in per]
            if not points:
                continue
            ns = [n for n, _ in points]
            ax.plot(ns, [c.mean for _, c in points], "o-", label=variant)
            low = [c.mean if c.ci_low != c.ci_low else c.ci_low for _, c in points]
            high = [c.mean if c.ci_high != c.ci_high else c.ci_high for _, c in points]
            ax.fill_between(ns, low, high, alpha=0.15)
    for ax, label in [(axes[0], "golden reward of the BoN pick"), (axes[1], "win rate vs a pi_SFT sample")]:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N")
        ax.set_ylabel(label)
    axes[1].axhline(0.5, ls=":", color="k")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_golden_vs_kl(summary: dict[str, dict[str, MeanCI]], path: Path) -> Path | None:
    """Golden reward against KL to pi_SFT: BoN curves at the analytic bound log N - (N-1)/N, and trained
    policies (DPO, RL, adversarial) as points at their Monte-Carlo KL, with CIs on both axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = n_grid(summary)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    drawn = False
    for variant, per in summary.items():
        is_bon = bool(grid) and f"bon/kl_bound@{grid[0]}" in per
        if is_bon:
            ns = [n for n in grid if f"bon/golden@{n}" in per]
            ax.plot(
                [per[f"bon/kl_bound@{n}"].mean for n in ns],
                [per[f"bon/golden@{n}"].mean for n in ns],
                "o-",
                label=f"BoN: {variant}",
            )
            drawn = True
        elif "policy/kl_to_sft/mean" in per and "eval/golden_mean" in per:
            kl, g = per["policy/kl_to_sft/mean"], per["eval/golden_mean"]
            xerr = [[kl.mean - kl.ci_low], [kl.ci_high - kl.mean]] if kl.ci_low == kl.ci_low else None
            yerr = [[g.mean - g.ci_low], [g.ci_high - g.mean]] if g.ci_low == g.ci_low else None
            ax.errorbar(
                [kl.mean], [g.mean], xerr=xerr, yerr=yerr, fmt="s", capsize=3, label=f"policy: {variant}"
            )
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("KL to pi_SFT (BoN: analytic bound; policies: Monte-Carlo)")
    ax.set_ylabel("golden reward")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_reward_scores(summary: dict[str, dict[str, MeanCI]], path: Path) -> Path | None:
    """Grouped bars of the proxy RM's mean score per variant (init, SFT, demos, BoN pick) with CI error
    bars across seeds; None (no figure) when no job ran the extrapolation diagnostic."""
    variants = reward_score_variants(summary)
    if not variants:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    width = 0.8 / len(REWARD_SCORE_GROUPS)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.6 * len(variants)), 4.2))
    x = np.arange(len(variants))
    for i, (group, name) in enumerate(REWARD_SCORE_GROUPS.items()):
        cis = [per.get(group) for per in variants.values()]
        means = [c.mean if c else np.nan for c in cis]
        # An unknown interval (a single seed) draws no error bar rather than a zero-width one.
        err = [
            [c.mean - c.ci_low if c and c.ci_low == c.ci_low else 0 for c in cis],
            [c.ci_high - c.mean if c and c.ci_high == c.ci_high else 0 for c in cis],
        ]
        offset = (i - (len(REWARD_SCORE_GROUPS) - 1) / 2) * width
        ax.bar(x + offset, means, width, yerr=err, capsize=2, label=name)
    ax.set_xticks(x, list(variants), rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("proxy RM score (mean over test prompts)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
