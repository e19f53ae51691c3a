"""`afd report <sweep dir>`: an offline comparison of a sweep's jobs, no W&B needed.

Reads every job's metrics.json and resolved config.yaml, and writes report.md (mean and 95% CI across
seeds for each objective and N) and report_bon.png (golden reward and win rate vs N per objective).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import yaml

from afd.stats import MeanCI, mean_ci

BON_KEY = re.compile(r"^bon/golden@(\d+)$")


class ReportError(ValueError):
    """A sweep directory the report cannot read; the message names the job directory."""


@dataclass
class Job:
    path: Path
    objective: str
    seed: int
    metrics: dict[str, float]


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
        return Job(path, str(config["objective"]["name"]), int(config["seed"]), metrics)
    except (yaml.YAMLError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ReportError(f"{path}: cannot read config.yaml / metrics.json ({type(e).__name__}: {e})") from e


def load_jobs(sweep_dir: Path) -> list[Job]:
    """Every job directory under `sweep_dir` (Hydra's numbered subdirectories, or a single run)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir}: not a directory")
    candidates = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir())
    if not candidates and (sweep_dir / ".hydra").is_dir():
        candidates = [sweep_dir]
    if not candidates:
        raise ReportError(f"{sweep_dir}: no job directories (subdirectories with a .hydra/ folder)")
    jobs, broken = [], []
    for path in candidates:
        try:
            jobs.append(_read_job(path))
        except ReportError as e:
            broken.append(str(e))
    if broken:
        raise ReportError("refusing to report a sweep with unreadable jobs:\n  " + "\n  ".join(broken))
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
    """summary[objective][metric] = mean and CI across seeds (one value per job); an objective with a
    single seed keeps that job's own CI over prompts (n=1 marks it)."""
    by_objective: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        by_objective[job.objective].append(job)
    summary = {}
    for objective, group in by_objective.items():
        keys = set.intersection(*(set(j.metrics) for j in group))
        numeric = [k for k in sorted(keys) if all(isinstance(j.metrics[k], (int, float)) for j in group)]
        if len(group) == 1:
            summary[objective] = {k: _own_ci(group[0].metrics, k, group[0].metrics[k]) for k in numeric}
        else:
            summary[objective] = {k: mean_ci([j.metrics[k] for j in group], level) for k in numeric}
    return summary


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
        "objective",
        "seeds",
        "eval/golden_mean",
        "policy/kl_to_sft/mean",
        "policy/winrate_vs_sft/mean",
        "rm/accuracy",
    ] + [f"bon/golden@{n}" for n in grid]
    lines = [
        f"Mean over seeds with a {level:.0%} t-interval across seeds; an objective run with a single seed "
        "shows that run's own interval over test prompts instead.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for objective, per in summary.items():
        seeds = per["eval/golden_mean"].n if "eval/golden_mean" in per else 0
        cells = [objective, str(seeds)] + [_fmt(per.get(c)) for c in cols[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    if golden:
        lines += [
            "",
            f"Reference levels (golden `{golden}`): "
            + ", ".join(
                f"{p} {_fmt(next(iter(summary.values())).get(f'eval/{golden}/{p}/mean'))}"
                for p in ["base", "sft", "demo"]
            ),
        ]
    wins = [f"bon/winrate_vs_sft@{n}" for n in grid]
    lines += [
        "",
        "Golden win rate of the BoN pick against a pi_SFT sample:",
        "",
        "| objective | " + " | ".join(f"N={n}" for n in grid) + " |",
        "|---|" + "---|" * len(grid),
    ]
    for objective, per in summary.items():
        if any(w in per for w in wins):  # trained policies have no BoN curve
            lines.append(f"| {objective} | " + " | ".join(_fmt(per.get(w)) for w in wins) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, dict[str, MeanCI]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = n_grid(summary)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for objective, per in summary.items():
        for ax, key in [(axes[0], "bon/golden@{}"), (axes[1], "bon/winrate_vs_sft@{}")]:
            points = [(n, per[key.format(n)]) for n in grid if key.format(n) in per]
            if not points:
                continue
            ns = [n for n, _ in points]
            ax.plot(ns, [c.mean for _, c in points], "o-", label=objective)
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
    for objective, per in summary.items():
        is_bon = bool(grid) and f"bon/kl_bound@{grid[0]}" in per
        if is_bon:
            ns = [n for n in grid if f"bon/golden@{n}" in per]
            ax.plot(
                [per[f"bon/kl_bound@{n}"].mean for n in ns],
                [per[f"bon/golden@{n}"].mean for n in ns],
                "o-",
                label=f"BoN: {objective}",
            )
            drawn = True
        elif "policy/kl_to_sft/mean" in per and "eval/golden_mean" in per:
            kl, g = per["policy/kl_to_sft/mean"], per["eval/golden_mean"]
            xerr = [[kl.mean - kl.ci_low], [kl.ci_high - kl.mean]] if kl.ci_low == kl.ci_low else None
            yerr = [[g.mean - g.ci_low], [g.ci_high - g.mean]] if g.ci_low == g.ci_low else None
            ax.errorbar(
                [kl.mean], [g.mean], xerr=xerr, yerr=yerr, fmt="s", capsize=3, label=f"policy: {objective}"
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


def report(sweep_dir: Path, out_dir: Path | None = None, level: float = 0.95) -> Path:
    jobs = load_jobs(sweep_dir)
    out_dir = Path(out_dir or sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(jobs, level)
    text = f"# afd report: {sweep_dir}\n\n{len(jobs)} jobs.\n\n" + markdown(summary, level)
    (out_dir / "report.md").write_text(text)
    plot(summary, out_dir / "report_bon.png")
    plot_golden_vs_kl(summary, out_dir / "report_golden_vs_kl.png")
    return out_dir / "report.md"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="afd report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun/ sweep directory (or one run directory)")
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write report.md (default: sweep_dir)"
    )
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    args = parser.parse_args(argv)
    try:
        path = report(args.sweep_dir, args.out, args.level)
    except ReportError as e:
        print(f"afd report: {e}", file=sys.stderr)
        return 2
    print(path.read_text())
    return 0
