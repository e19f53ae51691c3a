"""The paper's five qualitative claims (../shared/paper.md, section 5), each tested by one comparison of the
jobs `afd report` reads: the measured difference, its confidence interval across seeds (paired by seed:
both sides come from the same seed's pi_SFT, pools and prompts), and a verdict.

A verdict is "supported" when the interval lies on the claim's side of zero, "contradicted" when it lies
on the other side, and "unresolved at this size" otherwise. Best-of-N compares rewards at the largest N
every compared job evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from afd.analysis.jobs import Job
from afd.analysis.stats import MeanCI, mean_ci
from afd.analysis.summary import BON_KEY


@dataclass(frozen=True)
class Comparison:
    claim: str
    """The claim, in the paper's words (shortened)."""
    test: str
    """What is compared, in words."""
    left: str
    """The objective whose value should be larger if the claim holds."""
    right: str
    """The objective (or reference level) it is compared with."""
    metric: Callable[[Job, int], float | None]
    """The value of a job: (job, the largest N all compared jobs share) -> float, None if missing."""
    right_metric: Callable[[Job, int], float | None] | None = None
    """A different value for the right side (e.g. the demonstrations' golden level)."""


def _bon(job: Job, n: int) -> float | None:
    return job.metrics.get(f"bon/golden@{n}")


def _level(policy: str) -> Callable[[Job, int], float | None]:
    def value(job: Job, n: int) -> float | None:
        return next(
            (v for k, v in job.metrics.items() if k.startswith("eval/") and k.endswith(f"/{policy}/mean")),
            None,
        )

    return value


def _final(job: Job, n: int) -> float | None:
    return job.metrics.get("eval/golden_mean")


COMPARISONS = [
    Comparison(
        "1a. SFT on demonstrations is a strong baseline and beats preference-based alignment at equal data",
        "pi_SFT's golden mean minus Best-of-N with the Bradley-Terry preference reward model",
        "sft",
        "bt_pref",
        _level("sft"),
        _bon,
    ),
    Comparison(
        "1b. (the same, against DPO on the preference pairs)",
        "pi_SFT's golden mean minus the DPO policy's (dpo_pref)",
        "sft",
        "dpo_pref",
        _level("sft"),
        _final,
    ),
    Comparison(
        "2. The Init-SFT reward model + BoN matches or beats a preference-trained BT reward model + BoN",
        "Best-of-N golden reward: Init-SFT reward model minus Bradley-Terry reward model",
        "irl_init_sft",
        "bt_pref",
        _bon,
    ),
    Comparison(
        "3a. Init-SFT beats Init-Demo (heterogeneous positives)",
        "Best-of-N golden reward: Init-SFT minus Init-Demo",
        "irl_init_sft",
        "irl_init_demo",
        _bon,
    ),
    Comparison(
        "3b. Init-SFT beats SFT-Demo (heterogeneous positives and negatives)",
        "Best-of-N golden reward: Init-SFT minus SFT-Demo",
        "irl_init_sft",
        "irl_sft_demo",
        _bon,
    ),
    Comparison(
        "4. Best-of-N with the Init-SFT reward model can exceed the demonstrations (super-demonstration)",
        "Best-of-N golden reward with the Init-SFT reward model minus the demonstrations' golden mean",
        "irl_init_sft",
        "irl_init_sft",
        _bon,
        _level("demo"),
    ),
]

CLAIM_5 = (
    "5. Harmless is less divergent than Helpful, which explains where SFT alone suffices: not testable "
    "here. It compares two tasks (HH Harmless with GPT-2, HH Helpful with Gemma-2B); the embedded testbed "
    "is one task and one model, and a proxy on the same data (two golden rewards of the same samples) "
    "would measure the rewards, not how far the tasks' demonstrations lie from the base model. The GPU "
    "experiment file `task.yaml` runs both tasks."
)


@dataclass
class ClaimRow:
    comparison: Comparison
    n: int | None
    difference: MeanCI | None
    seeds: list[int]
    verdict: str


def _by_objective(jobs: Sequence[Job]) -> dict[str, dict[int, Job]]:
    """{objective: {seed: job}} of the jobs whose variant is their bare objective (other variants, e.g.
    a swept knob, are not the paper's defaults and stay out of the claims)."""
    out: dict[str, dict[int, Job]] = {}
    for job in jobs:
        if job.variant == job.objective:
            out.setdefault(job.objective, {})[job.seed] = job
    return out


def _largest_shared_n(jobs: Sequence[Job]) -> int | None:
    grids = [{int(m.group(1)) for k in j.metrics if (m := BON_KEY.match(k))} for j in jobs]
    shared = set.intersection(*grids) if grids else set()
    return max(shared) if shared else None


def evaluate_claims(jobs: Sequence[Job], level: float = 0.95) -> list[ClaimRow]:
    by_objective = _by_objective(jobs)
    # pi_SFT's level is in every job: take it from the Init-SFT jobs when the sweep has no sft objective.
    if "sft" not in by_objective and "irl_init_sft" in by_objective:
        by_objective["sft"] = by_objective["irl_init_sft"]
    rows = []
    for c in COMPARISONS:
        left, right = by_objective.get(c.left, {}), by_objective.get(c.right, {})
        seeds = sorted(set(left) & set(right))
        bon_jobs = [left[s] for s in seeds] + [right[s] for s in seeds]
        n = _largest_shared_n([j for j in bon_jobs if _bon(j, 1) is not None]) if seeds else None
        diffs = []
        for s in seeds:
            a = c.metric(left[s], n) if n else c.metric(left[s], 0)
            b = (c.right_metric or c.metric)(right[s], n) if n else (c.right_metric or c.metric)(right[s], 0)
            if a is not None and b is not None:
                diffs.append(a - b)
        if len(diffs) < 2:
            rows.append(
                ClaimRow(
                    c, n, mean_ci(diffs, level) if diffs else None, seeds, "not run (needs 2 seeds of both)"
                )
            )
            continue
        d = mean_ci(diffs, level)
        verdict = (
            "supported" if d.ci_low > 0 else "contradicted" if d.ci_high < 0 else "unresolved at this size"
        )
        rows.append(ClaimRow(c, n, d, seeds, verdict))
    return rows


def claims_markdown(jobs: Sequence[Job], level: float = 0.95) -> str:
    rows = evaluate_claims(jobs, level)
    lines = [
        "## The paper's claims",
        "",
        f"Each claim's comparison, as a difference paired by seed (both sides from the same seed's pi_SFT, "
        f"pools and test prompts), with a {level:.0%} Student-t interval across seeds. Verdict: supported "
        "when the interval excludes zero on the claim's side, contradicted when it excludes zero on the "
        "other side, unresolved otherwise. Best-of-N at the largest N all compared jobs evaluated.",
        "",
        "| claim | comparison | N | seeds | difference [CI] | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = (
            "-"
            if r.difference is None
            else (
                f"{r.difference.mean:+.3f} [{r.difference.ci_low:+.3f}, {r.difference.ci_high:+.3f}]"
                if r.difference.n > 1
                else f"{r.difference.mean:+.3f}"
            )
        )
        seeds = ",".join(str(s) for s in r.seeds) or "-"
        lines.append(
            f"| {r.comparison.claim} | {r.comparison.test} | {r.n or '-'} | {seeds} | {diff} | {r.verdict} |"
        )
    lines += ["", CLAIM_5, ""]
    return "\n".join(lines)
