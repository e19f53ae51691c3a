"""`afd report DIR [DIR ...] [--out OUT]`: an offline comparison of sweeps' jobs, no W&B needed.

Reads every job's metrics.json, resolved config.yaml and .hydra/overrides.yaml under one or more sweep
directories (reported together), groups the jobs into variants (the objective plus every override that
differs between jobs; seeds are what varies within a variant), and writes report.md (mean and 95% CI
across seeds for each variant and N), report_bon.png (golden reward and win rate vs N per variant),
report_golden_vs_kl.png and, when jobs ran the extrapolation diagnostic (ablation A6), report_rm_scores.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from afd.errors import UserError
from afd.stats import MeanCI, mean_ci

BON_KEY = re.compile(r"^bon/golden@(\d+)$")
# Overrides that never name a variant: the objective leads the label anyway, seeds are what the
# report aggregates over, and the experiment file only bundles the overrides that are listed anyway.
NOT_VARIANT_KEYS = {"objective", "seed", "experiment"}
# The extrapolation diagnostic (afd/stages/bon.py): the proxy RM's mean score of each group.
RM_SCORE_GROUPS = {"base": "init", "sft": "SFT", "demo": "demos", "bon": "BoN pick"}
RM_SCORE_KEY = "rm_scores/{}/mean"


class ReportError(UserError):
    """A sweep directory the report cannot read; the message names the job directory."""


@dataclass
class Job:
    path: Path
    objective: str
    seed: int
    metrics: dict[str, float]
    overrides: dict[str, str] = field(default_factory=dict)
    variant: str = ""  # the objective plus the overrides that tell it apart; set by load_jobs
    settings: dict[str, object] = field(default_factory=dict)  # resolved config that must match across seeds


def _parse_override(text: str) -> tuple[str, str]:
    """`key=value` (also `+key=value`, `++key=value`) as (key, value); a deletion `~key` as (key, "~")."""
    text = str(text)
    key, _, value = text.lstrip("+~").partition("=")
    if text.startswith("~"):  # a deleted key differs from any value it could have
        value = "~" + value
    return key.strip(), value.strip()


def _read_overrides(path: Path) -> dict[str, str]:
    """The job's command-line overrides; none when Hydra wrote no overrides.yaml."""
    file = path / ".hydra" / "overrides.yaml"
    if not file.is_file():
        return {}
    try:
        items = yaml.safe_load(file.read_text()) or []
    except yaml.YAMLError as e:
        raise ReportError(f"{path}: cannot read .hydra/overrides.yaml ({type(e).__name__}: {e})") from e
    if not isinstance(items, list):
        raise ReportError(f"{path}: .hydra/overrides.yaml is not a list of overrides")
    return dict(_parse_override(item) for item in items)


def _read_job(path: Path) -> Job:
    config_file, metrics_file = path / "config.yaml", path / "metrics.json"
    if not config_file.is_file():
        raise ReportError(f"{path}: no config.yaml (not an afd job directory, or it failed before starting)")
    if not metrics_file.is_file():
        raise ReportError(
            f"{path}: no metrics.json (the job failed or is still running; re-run it to finish)"
        )
    try:
        config = yaml.safe_load(config_file.read_text())
        metrics = json.loads(metrics_file.read_text())
        objective, seed = str(config["objective"]["name"]), int(config["seed"])
    except (yaml.YAMLError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ReportError(f"{path}: cannot read config.yaml / metrics.json ({type(e).__name__}: {e})") from e
    settings = {k: v for k, v in _flatten(config).items() if not k.startswith(NOT_SETTINGS)}
    return Job(path, objective, seed, metrics, _read_overrides(path), variant=objective, settings=settings)


# Resolved-config keys that may differ between the seeds of one variant without changing what it is.
NOT_SETTINGS = ("seed", "experiment", "paths.", "logger.", "compute.threads")


def _flatten(node: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, object] = {}
    for key, value in node.items():
        out.update(_flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return out


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """Hydra's numbered job subdirectories of `sweep_dir`, or `sweep_dir` itself when it is one run."""
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir}: not a directory")
    candidates = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir())
    if not candidates and (sweep_dir / ".hydra").is_dir():
        candidates = [sweep_dir]
    if not candidates:
        raise ReportError(f"{sweep_dir}: no job directories (subdirectories with a .hydra/ folder)")
    return candidates


def _is_variant_key(key: str) -> bool:
    return key not in NOT_VARIANT_KEYS and not key.startswith(("hydra.", "hydra/"))


def label_variants(jobs: Sequence[Job]) -> list[Job]:
    """Each job labelled `objective key=value ...` with every override key (sorted) whose value differs
    between the jobs; a key some jobs do not override counts as differing, and is absent from those
    jobs' labels."""
    keys = sorted({k for j in jobs for k in j.overrides if _is_variant_key(k)})
    varying = [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]
    return [
        dataclasses.replace(
            j,
            variant=" ".join([j.objective] + [f"{k}={j.overrides[k]}" for k in varying if k in j.overrides]),
        )
        for j in jobs
    ]


def _refuse_repeated_seeds(jobs: Sequence[Job]) -> None:
    """Two jobs of one variant with the same seed (e.g. the same run in two sweeps reported together, or
    sweeps that differ only in `experiment`) would count as two seeds and shrink the interval falsely."""
    seen: dict[tuple[str, int], Path] = {}
    for job in jobs:
        other = seen.setdefault((job.variant, job.seed), job.path)
        if other != job.path:
            raise ReportError(
                f"{job.path}: same variant ({job.variant}) and seed ({job.seed}) as {other}; "
                "report these sweeps separately"
            )


def _refuse_mixed_settings(jobs: Sequence[Job]) -> None:
    """Jobs of one variant label whose resolved configs differ beyond the seed (e.g. two sweeps whose
    experiment files set different pool sizes) are not seeds of one thing: refuse to pool them."""
    first: dict[str, Job] = {}
    for job in jobs:
        ref = first.setdefault(job.variant, job)
        differ = sorted(
            k for k in ref.settings.keys() | job.settings.keys() if ref.settings.get(k) != job.settings.get(k)
        )
        if differ:
            raise ReportError(
                f"{job.path}: same variant ({job.variant}) as {ref.path} but a different config "
                f"({', '.join(differ[:5])}{' ...' if len(differ) > 5 else ''}); "
                "report these sweeps separately"
            )


def load_jobs(*sweep_dirs: Path) -> list[Job]:
    """Every job directory under the sweep directories, labelled with its variant (label_variants)."""
    jobs, broken = [], []
    for sweep_dir in sweep_dirs:
        for path in _job_dirs(Path(sweep_dir)):
            try:
                jobs.append(_read_job(path))
            except ReportError as e:
                broken.append(str(e))
    if broken:
        raise ReportError("refusing to report a sweep with unreadable jobs:\n  " + "\n  ".join(broken))
    jobs = label_variants(jobs)
    _refuse_repeated_seeds(jobs)
    _refuse_mixed_settings(jobs)
    return jobs


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


def _fmt(ci: MeanCI | None) -> str:
    if ci is None:
        return "-"
    if ci.ci_low != ci.ci_low:  # NaN: no interval known
        return f"{ci.mean:.3f}"
    return f"{ci.mean:.3f} [{ci.ci_low:.3f}, {ci.ci_high:.3f}]"


def n_grid(summary: dict[str, dict[str, MeanCI]]) -> list[int]:
    return sorted({int(m.group(1)) for per in summary.values() for k in per if (m := BON_KEY.match(k))})


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
        "rm/accuracy",
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
                f"{p} {_fmt(per.get(f'eval/{golden}/{p}/mean'))}" for p in ["base", "sft", "demo"]
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
    return "\n".join(lines) + "\n" + rm_scores_markdown(summary)


def rm_score_variants(summary: dict[str, dict[str, MeanCI]]) -> dict[str, dict[str, MeanCI]]:
    """The variants that ran the extrapolation diagnostic (reward-model objectives; sft, dpo and rl
    have no proxy RM to score with), each with its RM-score means by group."""
    return {
        variant: {g: per[RM_SCORE_KEY.format(g)] for g in RM_SCORE_GROUPS if RM_SCORE_KEY.format(g) in per}
        for variant, per in summary.items()
        if any(RM_SCORE_KEY.format(g) in per for g in RM_SCORE_GROUPS)
    }


def rm_scores_markdown(summary: dict[str, dict[str, MeanCI]]) -> str:
    """The extrapolation diagnostic (ablation A6) as a table, or nothing when no job ran it."""
    variants = rm_score_variants(summary)
    if not variants:
        return ""
    lines = [
        "",
        "## Reward-model scores (extrapolation diagnostic)",
        "",
        "Mean proxy-RM score of each group of responses to the test prompts (`rm_scores/<group>/mean`). "
        "Each variant's RM has its own scale, so compare groups within a row: BoN picks scored far above "
        "the demonstrations mean the RM extrapolates beyond the data it was fit on.",
        "",
        "| variant | seeds | " + " | ".join(RM_SCORE_GROUPS.values()) + " |",
        "|---|---|" + "---|" * len(RM_SCORE_GROUPS),
    ]
    for variant, per in variants.items():
        seeds = max(c.n for c in per.values())
        cells = [variant, str(seeds)] + [_fmt(per.get(g)) for g in RM_SCORE_GROUPS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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


def plot_rm_scores(summary: dict[str, dict[str, MeanCI]], path: Path) -> Path | None:
    """Grouped bars of the proxy RM's mean score per variant (init, SFT, demos, BoN pick) with CI error
    bars across seeds; None (no figure) when no job ran the extrapolation diagnostic."""
    variants = rm_score_variants(summary)
    if not variants:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    width = 0.8 / len(RM_SCORE_GROUPS)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.6 * len(variants)), 4.2))
    x = np.arange(len(variants))
    for i, (group, name) in enumerate(RM_SCORE_GROUPS.items()):
        cis = [per.get(group) for per in variants.values()]
        means = [c.mean if c else np.nan for c in cis]
        # An unknown interval (a single seed) draws no error bar rather than a zero-width one.
        err = [
            [c.mean - c.ci_low if c and c.ci_low == c.ci_low else 0 for c in cis],
            [c.ci_high - c.mean if c and c.ci_high == c.ci_high else 0 for c in cis],
        ]
        offset = (i - (len(RM_SCORE_GROUPS) - 1) / 2) * width
        ax.bar(x + offset, means, width, yerr=err, capsize=2, label=name)
    ax.set_xticks(x, list(variants), rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("proxy RM score (mean over test prompts)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
    (out_dir / "report.md").write_text(text)
    plot(summary, out_dir / "report_bon.png")
    plot_golden_vs_kl(summary, out_dir / "report_golden_vs_kl.png")
    plot_rm_scores(summary, out_dir / "report_rm_scores.png")
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
