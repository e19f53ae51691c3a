"""`afd report DIR [DIR ...] [--out OUT]`: an offline comparison of sweeps' jobs, no W&B needed.

Reads every job's metrics.json, resolved config.yaml and .hydra/overrides.yaml under one or more sweep
directories (reported together), groups the jobs into variants (the objective plus every override that
differs between jobs; seeds are what varies within a variant), and writes report.md (mean and 95% CI
across seeds for each variant and N), report_bon.png (golden reward and win rate vs N per variant),
report_golden_vs_kl.png and, when jobs ran the extrapolation diagnostic (ablation A6),
report_reward_scores.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from afd.analysis.claims import claims_markdown
from afd.analysis.jobs import ReportError, load_jobs
from afd.analysis.report_plots import plot, plot_golden_vs_kl, plot_reward_scores
from afd.analysis.stats import MeanCI
from afd.analysis.summary import REWARD_SCORE_GROUPS, n_grid, reward_score_variants, summarise


def _fmt(ci: MeanCI | None) -> str:
    if ci is None:
        return "-"
    if ci.ci_low != ci.ci_low:  # NaN: no interval known
        return f"{ci.mean:.3f}"
    return f"{ci.mean:.3f} [{ci.ci_low:.3f}, {ci.ci_high:.3f}]"


def markdown(summary: dict[str, dict[str, MeanCI]], level: float) -> str:
    grid = n_grid(summary)
    golden = next(
        (
            k[len("eval/") : -len("/demo/mean")]
            for per in summary.values()
            for k in per
            if k.endswith("/demo/mean")
        ),
        None,
    )
    cols = [
        "variant",
        "seeds",
        "eval/golden_mean",
        "policy/kl_to_sft/mean",
        "policy/winrate_vs_sft/mean",
        "reward/accuracy",
    ] + [f"bon/golden@{n}" for n in grid]
    lines = [
        f"Mean over seeds with a {level:.0%} Student-t interval across seeds (proportions: accuracies, win "
        "rates and label agreements, clipped to [0, 1]); a variant run with a single seed shows that run's "
        "own interval over test prompts instead.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for variant, per in summary.items():
        seeds = per["eval/golden_mean"].n if "eval/golden_mean" in per else 0
        cells = [variant, str(seeds)] + [_fmt(per.get(c)) for c in cols[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    if golden:
        levels = {
            variant: ", ".join(
                f"{p} {_fmt(per.get(f'eval/{golden}/{p}/mean'))}" for p in ["init", "sft", "demo"]
            )
            for variant, per in summary.items()
        }
        if len(set(levels.values())) == 1:
            lines += ["", f"Reference levels (golden `{golden}`): {next(iter(levels.values()))}"]
        else:  # variants on different tasks or data (e.g. A3, A11) have their own levels
            lines += ["", f"Reference levels (golden `{golden}`) per variant:", ""]
            lines += [f"- {variant}: {text}" for variant, text in levels.items()]
    wins = [f"bon/winrate_vs_sft@{n}" for n in grid]
    lines += [
        "",
        "Golden win rate of the BoN pick against a pi_SFT sample:",
        "",
        "| variant | " + " | ".join(f"N={n}" for n in grid) + " |",
        "|---|" + "---|" * len(grid),
    ]
    for variant, per in summary.items():
        if any(w in per for w in wins):  # trained policies have no BoN curve
            lines.append(f"| {variant} | " + " | ".join(_fmt(per.get(w)) for w in wins) + " |")
    return "\n".join(lines) + "\n"


def reward_scores_markdown(summary: dict[str, dict[str, MeanCI]]) -> str:
    """The extrapolation diagnostic (ablation A6) as a table, or nothing when no job ran it."""
    variants = reward_score_variants(summary)
    if not variants:
        return ""
    lines = [
        "",
        "## Reward-model scores (extrapolation diagnostic)",
        "",
        "Mean proxy-RM score of each group of responses to the test prompts (`reward_scores/<group>/mean`). "
        "Each variant's RM has its own scale, so compare groups within a row: BoN picks scored far above "
        "the demonstrations mean the RM extrapolates beyond the data it was fit on.",
        "",
        "| variant | seeds | " + " | ".join(REWARD_SCORE_GROUPS.values()) + " |",
        "|---|---|" + "---|" * len(REWARD_SCORE_GROUPS),
    ]
    for variant, per in variants.items():
        seeds = max(c.n for c in per.values())
        cells = [variant, str(seeds)] + [_fmt(per.get(g)) for g in REWARD_SCORE_GROUPS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(sweep_dirs: Path | Sequence[Path], out_dir: Path | None = None, level: float = 0.95) -> Path:
    """report.md and its figures for the jobs of all `sweep_dirs` together, written to `out_dir` (which
    defaults to the sweep directory when there is just one)."""
    dirs = [Path(sweep_dirs)] if isinstance(sweep_dirs, (str, Path)) else [Path(d) for d in sweep_dirs]
    if out_dir is None and len(dirs) != 1:
        raise ReportError("reporting several sweep directories together needs an output directory (--out)")
    jobs = load_jobs(*dirs)
    out_dir = Path(out_dir or dirs[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(jobs, level)
    title = ", ".join(str(d) for d in dirs)
    text = f"# afd report: {title}\n\n{len(jobs)} jobs.\n\n" + markdown(summary, level)
    text += "\n" + claims_markdown(jobs, level) + reward_scores_markdown(summary)
    (out_dir / "report.md").write_text(text)
    plot(summary, out_dir / "report_bon.png")
    plot_golden_vs_kl(summary, out_dir / "report_golden_vs_kl.png")
    plot_reward_scores(summary, out_dir / "report_reward_scores.png")
    return out_dir / "report.md"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="afd report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dirs",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="multirun/ sweep directories (or single run directories); the jobs of all of them are "
        "reported together",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write report.md and its figures (default: DIR; required with several DIRs)",
    )
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    args = parser.parse_args(argv)
    if args.out is None and len(args.sweep_dirs) > 1:
        parser.error("--out is required when reporting more than one sweep directory")
    try:
        path = report(args.sweep_dirs, args.out, args.level)
    except ReportError as e:
        print(f"afd report: {e}", file=sys.stderr)
        return 2
    print(path.read_text())
    return 0
