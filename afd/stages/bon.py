"""The bon stage: Best-of-N on one pool of M pi_SFT samples per test prompt, exact for every N
(afd/bon.py), plus the reward-extrapolation diagnostic (paper section 3, steps 5-6; ablation A6)."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from afd.bon import bon_curve, curve_metrics, default_n_grid  # noqa: E402
from afd.context import RunContext  # noqa: E402
from afd.rewards import Reward  # noqa: E402
from afd.tracking import write_csv  # noqa: E402


def score_pool(reward: Reward, prompts: Sequence[list], pool: Sequence[Sequence[str]]) -> np.ndarray:
    """(prompts x M) scores of every pool sample."""
    flat = reward.score([p for p, rs in zip(prompts, pool) for _ in rs], [r for rs in pool for r in rs])
    return flat.reshape(len(pool), -1)


def mean_win_vs_pool(golden: np.ndarray) -> np.ndarray:
    """w[p, i] = win rate of sample i against a uniformly drawn sample of the same pool (ties half).
    Win rates are linear in the reference's distribution, so BoN on w is the exact expected win rate
    of the pick against a random pi_SFT sample."""
    g = golden[:, :, None], golden[:, None, :]
    return ((g[0] > g[1]) + 0.5 * (g[0] == g[1])).mean(axis=2)


def best_of_n(
    ctx: RunContext,
    proxy: np.ndarray,
    golden: np.ndarray,
    demo_golden: np.ndarray,
    levels: Mapping[str, float],
    reward_name: str,
) -> tuple[dict[str, float], list[dict]]:
    """BoN metrics (`bon/golden@N`, `bon/winrate_vs_sft@N`, `bon/winrate_vs_demo@N`, `bon/kl_bound@N`),
    bon_curve.csv and bon_curve.png, and the curve as W&B rows keyed by `bon/n`."""
    cfg = ctx.cfg
    grid = sorted(set(cfg.bon.n_grid)) if cfg.bon.n_grid else default_n_grid(proxy.shape[1])
    level = cfg.eval.ci_level
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
    path = plot_curve(rows, levels, reward_name, ctx.output_dir / "bon_curve.png")
    ctx.tracker.log_image("bon/curve_plot", path)
    return metrics, rows


def plot_curve(rows: Sequence[Mapping], levels: Mapping[str, float], reward_name: str, path):
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
    fig.suptitle(f"Best-of-N by {reward_name} (mean and 95% CI over test prompts)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def extrapolation_diagnostic(
    ctx: RunContext, scores: Mapping[str, np.ndarray], reward_name: str
) -> dict[str, float]:
    """Proxy-reward distributions of pi_init samples, pi_SFT samples, demonstrations and BoN picks
    (paper ablation A6): `rm_scores/<group>/mean` and rm_scores.png."""
    metrics = {f"rm_scores/{k}/mean": float(np.mean(v)) for k, v in scores.items()}
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for k, v in scores.items():
        ax.hist(np.ravel(v), bins=30, alpha=0.45, density=True, label=f"{k} (mean {np.mean(v):.2f})")
    ax.set_xlabel(f"proxy reward ({reward_name})")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = ctx.output_dir / "rm_scores.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    ctx.tracker.log_image("rm_scores/hist", path)
    return metrics
