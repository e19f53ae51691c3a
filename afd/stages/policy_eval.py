"""The policy_eval stage: a trained final policy (DPO, RL, adversarial) judged like Best-of-N: golden
reward with a CI over test prompts, golden win rate against pi_SFT, and a Monte-Carlo KL to pi_SFT, so
that golden reward vs KL puts BoN and trained policies on one plot (paper ablation A9)."""

from __future__ import annotations

import numpy as np

from afd.analysis.stats import mean_ci
from afd.config.stages import PolicyEvalSettings
from afd.generation.scoring import response_logprobs
from afd.models.policies import PolicyHandle
from afd.runtime.context import RunContext
from afd.runtime.distributed import sharded
from afd.stages.evaluate import evaluate
from afd.stages.prepare import Prepared
from afd.stages.sample import sample_split


def win_rate_against_pool(golden: np.ndarray, pool_golden: np.ndarray) -> np.ndarray:
    """Per prompt: the win rate (ties half) of the policy's samples against the pi_SFT pool's."""
    a, b = golden[:, :, None], pool_golden[:, None, :]
    return ((a > b) + 0.5 * (a == b)).mean(axis=(1, 2))


def kl_to_reference(
    ctx: RunContext, policy: PolicyHandle, reference: PolicyHandle, prompts, samples
) -> np.ndarray:
    """Per prompt: mean over the policy's samples y ~ pi of log pi(y|x) - log pi_ref(y|x), an unbiased
    Monte-Carlo estimate of KL(pi || pi_ref) (in fp32: a difference of sums of log-probabilities)."""
    cfg = ctx.cfg
    flat_prompts = [p for p, rs in zip(prompts, samples) for _ in rs]
    flat = [r for rs in samples for r in rs]
    logp = {}
    for name, handle in [("policy", policy), ("reference", reference)]:
        model, tokenizer = handle.get()
        with sharded():
            logp[name] = response_logprobs(
                model,
                tokenizer,
                flat_prompts,
                flat,
                cfg.sampling.max_prompt_tokens,
                cfg.scoring.batch_size,
                f"log {handle.name}",
            )
    return (logp["policy"] - logp["reference"]).reshape(len(samples), -1).mean(axis=1)


def evaluate_policy(
    ctx: RunContext, prep: Prepared, policy: PolicyHandle, settings: PolicyEvalSettings
) -> dict[str, float]:
    """`eval/*` for pi_init, pi_SFT, the demonstrations and `policy` (its golden mean is
    `eval/golden_mean`), plus `policy/winrate_vs_sft` and `policy/kl_to_sft` with their CIs."""
    cfg = ctx.cfg
    test = prep.splits["test"]
    samples = sample_split(ctx, policy, "test", test, settings.samples_per_prompt)
    responses = {"init": prep.init_test, "sft": prep.sft_test, policy.name: samples}
    metrics, golden = evaluate(ctx, prep.goldens, test, responses, policy.name)
    primary = next(iter(prep.goldens))
    level = cfg.eval.ci_level
    win = mean_ci(win_rate_against_pool(golden[primary][policy.name], golden[primary]["sft"]), level)
    kl = mean_ci(kl_to_reference(ctx, policy, prep.sft, list(test["prompt"]), samples), level)
    metrics.update(win.as_metrics("policy/winrate_vs_sft"))
    metrics.update(kl.as_metrics("policy/kl_to_sft"))
    return metrics


def print_policy(name: str, metrics: dict[str, float]) -> None:
    """The console line of a trained policy's evaluation."""
    print(
        f"{name}: golden {metrics['eval/golden_mean']:.3f} "
        f"[{metrics['eval/golden_ci_low']:.3f}, {metrics['eval/golden_ci_high']:.3f}], "
        f"win vs pi_SFT {metrics['policy/winrate_vs_sft/mean']:.3f}, "
        f"KL to pi_SFT {metrics['policy/kl_to_sft/mean']:.3f}"
    )
