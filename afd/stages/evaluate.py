"""The evaluate stage: golden reward of each policy's samples (and of the demonstrations), with a
95% CI over test prompts, a samples table, and a plot (paper section 3, step 6)."""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import datasets
import numpy as np

from afd.analysis.plots import plot_golden
from afd.analysis.stats import MeanCI, mean_ci
from afd.rewards.reward import Reward, score_pool
from afd.runtime.context import RunContext
from afd.runtime.tracking import write_csv

log = logging.getLogger(__name__)

DEMO = "demo"


def score_policies(
    goldens: Mapping[str, Reward],
    split: datasets.Dataset,
    responses: Mapping[str, Sequence[Sequence[str]]],
) -> dict[str, dict[str, np.ndarray]]:
    """scores[golden][policy]: (prompts x samples) golden rewards; the demonstrations are policy "demo"."""
    prompts = list(split["prompt"])
    by_policy = {**responses, DEMO: [[d] for d in split["demonstration"]]}
    return {
        g: {p: score_pool(golden, prompts, rs) for p, rs in by_policy.items()}
        for g, golden in goldens.items()
    }


def prompt_text(messages: Sequence[dict]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def evaluate(
    ctx: RunContext,
    goldens: Mapping[str, Reward],
    split: datasets.Dataset,
    responses: Mapping[str, Sequence[Sequence[str]]],
    final_policy: str,
) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """Metrics `eval/<golden>/<policy>/{mean,ci_low,ci_high,n}`, `eval/golden_mean` (the final policy on
    the primary, first-listed golden reward) and, when pi_init and pi_SFT are both evaluated,
    `eval/sft_gain`; and the (prompts x samples) golden scores. Writes scores.csv (per-prompt means),
    samples.csv, golden_eval.png. CIs are over prompts."""
    level = ctx.cfg.eval.ci_level
    scores = score_policies(goldens, split, responses)
    cis: dict[str, dict[str, MeanCI]] = {
        g: {p: mean_ci(v.mean(axis=1), level) for p, v in per.items()} for g, per in scores.items()
    }
    metrics: dict[str, float] = {}
    for g, per in cis.items():
        for p, ci in per.items():
            metrics.update(ci.as_metrics(f"eval/{g}/{p}"))
    primary = next(iter(goldens))
    final = cis[primary][final_policy]
    metrics.update(
        {
            "eval/golden_mean": final.mean,
            "eval/golden_ci_low": final.ci_low,
            "eval/golden_ci_high": final.ci_high,
        }
    )
    if "init" in responses and "sft" in responses:
        metrics.update(sft_gain(scores[primary], level, primary))

    policies = [*responses, DEMO]
    out = ctx.output_dir
    score_cols = [f"{g}/{p}" for g in scores for p in policies]
    write_csv(
        out / "scores.csv",
        ["prompt_id", *score_cols],
        [
            [pid, *[float(scores[g][p][i].mean()) for g in scores for p in policies]]
            for i, pid in enumerate(split["prompt_id"])
        ],
    )
    rows = []
    for i in range(min(ctx.cfg.eval.table_rows, len(split))):
        row = [prompt_text(split[i]["prompt"]), split[i]["demonstration"]]
        row += [responses[p][i][0] for p in responses]
        row += [round(float(scores[g][p][i][0]), 4) for g in scores for p in policies]
        rows.append(row)
    columns = ["prompt", "demonstration", *responses, *score_cols]
    write_csv(out / "samples.csv", columns, rows)
    ctx.tracker.log_table("eval/samples", columns, rows)

    plot_path = plot_golden(cis, level, out / "golden_eval.png")
    ctx.tracker.log_image("eval/golden_plot", plot_path)
    return metrics, scores


def sft_gain(scores: Mapping[str, np.ndarray], level: float, golden: str) -> dict[str, float]:
    """`eval/sft_gain`: pi_SFT's golden mean minus pi_init's, paired by test prompt, with its CI. Every
    reward learned from what SFT changed needs SFT to have learned from the demonstrations: a WARNING
    says so when the interval does not exclude zero."""
    gain = mean_ci(scores["sft"].mean(axis=1) - scores["init"].mean(axis=1), level)
    if not gain.ci_low > 0:
        log.warning(
            "SFT did not measurably learn from the demonstrations: golden %s of pi_SFT minus pi_init is "
            "%.3f [%.3f, %.3f] (%.0f%% CI over test prompts, which does not exclude 0); rewards learned from "
            "what SFT changed have little to extrapolate",
            golden,
            gain.mean,
            gain.ci_low,
            gain.ci_high,
            100 * level,
        )
    return gain.as_metrics("eval/sft_gain")


def format_table(metrics: Mapping[str, float], goldens: Sequence[str], policies: Sequence[str]) -> str:
    """A plain-text summary for the console: policy x golden, mean [CI]."""
    lines = ["policy    " + "".join(f"{g:>30}" for g in goldens)]
    for p in policies:
        cells = []
        for g in goldens:
            k = f"eval/{g}/{p}"
            cells.append(
                f"{metrics[k + '/mean']:.3f} [{metrics[k + '/ci_low']:.3f}, {metrics[k + '/ci_high']:.3f}]"
            )
        lines.append(f"{p:<10}" + "".join(f"{c:>30}" for c in cells))
    if "eval/sft_gain/mean" in metrics:
        k = "eval/sft_gain"
        gain = f"{metrics[k + '/mean']:.3f} [{metrics[k + '/ci_low']:.3f}, {metrics[k + '/ci_high']:.3f}]"
        lines.append(f"{'sft - init':<10}{gain:>30}   (paired by prompt, primary golden)")
    return "\n".join(lines)
