"""objective=reverse_kl: adversarial imitation from demonstrations (paper section 2, GAIL/AIRL-style).

Each round samples the current policy on the rm prompts, updates a discriminator (demonstrations = 1,
policy samples = 0; warm-started from the previous round's) and then the policy with GRPO/RLOO on the
divergence's transform of the discriminator's logit. Every round's KL penalty (rl.beta) is to the policy
the rounds started from (adversarial.start, pi_SFT by default), not to the previous round's policy: the
regulariser stays fixed while the discriminator moves.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from afd.config import PolicyStart
from afd.context import RunContext
from afd.models import policy_source
from afd.objectives.pipeline import Prepared, prepare
from afd.policies import PolicyHandle
from afd.rewards import DiscriminatorReward
from afd.rm_data import RMPair, split_heldout
from afd.stages.policy_eval import evaluate_policy
from afd.stages.policy_training import train_log
from afd.stages.rl import train_rl
from afd.stages.sample import sample_split
from afd.stages.train_rm import heldout_accuracy, train_rm
from afd.tracking import write_csv


def discriminator_pairs(prep: Prepared, samples: list[list[str]]) -> list[RMPair]:
    """Demonstration (positive) vs each policy sample (negative), matched by rm prompt."""
    split = prep.splits["rm"]
    rows = zip(split["prompt_id"], split["prompt"], split["demonstration"], samples)
    return [RMPair(pid, list(prompt), demo, s) for pid, prompt, demo, ss in rows for s in ss]


def probe_golden(ctx: RunContext, prep: Prepared, policy: PolicyHandle) -> float:
    """Mean primary golden reward of one sample per probe prompt (the first test prompts)."""
    test = prep.splits["test"]
    probe = test.select(range(min(ctx.cfg.adversarial.probe_prompts, len(test))))
    samples = sample_split(ctx, policy, "probe", probe, 1)
    golden = next(iter(prep.goldens.values()))
    return float(np.mean(golden.score(list(probe["prompt"]), [s[0] for s in samples])))


def run(ctx: RunContext) -> dict[str, float]:
    cfg = ctx.cfg
    adv = cfg.adversarial
    prep = prepare(ctx)
    split = prep.splits["rm"]
    policy = prep.sft if adv.start is PolicyStart.sft else prep.base
    reference = policy
    if adv.discriminator_steps > 0:
        disc_cfg = dataclasses.replace(cfg, rm=dataclasses.replace(cfg.rm, max_steps=adv.discriminator_steps))
        disc_ctx = dataclasses.replace(ctx, cfg=disc_cfg)
    else:
        disc_ctx = ctx
    init_source = (
        policy_source(cfg.model, cfg.paths.cache_dir)[0]
        if cfg.rm.init.value == "base"
        else str(prep.sft.path)
    )
    init_spec = prep.base.spec if cfg.rm.init.value == "base" else prep.sft.spec
    rounds = []
    for r in range(1, adv.rounds + 1):
        samples = sample_split(ctx, policy, "rm", split, cfg.rm.samples_per_prompt)
        train, heldout = split_heldout(discriminator_pairs(prep, samples), cfg.rm.heldout_fraction, cfg.seed)
        disc = train_rm(disc_ctx, init_source, init_spec, train, cfg.rm.loss, f"discriminator r{r}")
        # Warm start: the next round's discriminator continues from this one.
        init_source, init_spec = str(disc.path), {"discriminator": disc.path.name}
        reward = DiscriminatorReward(disc, adv.divergence.value)
        reward_spec = {"discriminator": disc.path.name, "divergence": adv.divergence}
        policy = train_rl(
            ctx,
            policy,
            reward,
            reward_spec,
            list(split["prompt"]),
            list(split["prompt_id"]),
            f"adv_r{r}",
            reference=reference,
        )
        log = train_log(policy)
        # The last logged loss, or the run's average when training was shorter than a logging interval.
        disc_log = [
            h.get("loss", h.get("train_loss")) for h in json.loads((disc.path / "train_log.json").read_text())
        ]
        disc_log = [x for x in disc_log if x is not None]
        row = {
            "round": r,
            "disc_accuracy": heldout_accuracy(disc, heldout, pointwise=True).get("rm/accuracy", float("nan")),
            "disc_loss": disc_log[-1] if disc_log else float("nan"),
            "mean_reward": float(np.mean([h["reward"] for h in log])) if log else float("nan"),
            "kl": log[-1].get("kl", float("nan")) if log else float("nan"),
            "golden_probe": probe_golden(ctx, prep, policy),
        }
        rounds.append(row)
        ctx.tracker.log({f"adv/{k}": v for k, v in row.items()})
        print(f"round {r}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "round"))
    write_csv(
        ctx.output_dir / "adversarial_rounds.csv", list(rounds[0]), [list(row.values()) for row in rounds]
    )
    metrics = evaluate_policy(ctx, prep, policy)
    for row in rounds:
        metrics.update({f"adv/round{row['round']}/{k}": v for k, v in row.items() if k != "round"})
    metrics["adv/rounds"] = adv.rounds
    return metrics
