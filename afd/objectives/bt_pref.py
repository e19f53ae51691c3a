"""objective=bt_pref: the preference baseline, a Bradley-Terry reward model on chosen/rejected pairs,
then Best-of-N. Without human preferences a simulated annotator labels two pi_SFT samples per prompt
by the primary golden reward and flips rm.flip_rate of the labels (the paper's noisy-label motivation)."""

from __future__ import annotations

from afd.config import RMLoss
from afd.context import RunContext
from afd.objectives.pipeline import prepare, reward_model_bon, rm_responses
from afd.rm_data import RMPair, Source, preference_pairs, simulated_preference_pairs
from afd.stages.bon import score_pool


def run(ctx: RunContext) -> dict[str, float]:
    cfg = ctx.cfg
    prep = prepare(ctx)
    split = prep.splits["rm"]
    ids, prompts = list(split["prompt_id"]), list(split["prompt"])
    chosen, rejected = list(split["chosen"]), list(split["rejected"])
    if all(c is not None and r is not None for c, r in zip(chosen, rejected)) and chosen:
        pairs = preference_pairs(ids, prompts, chosen, rejected)
        return reward_model_bon(ctx, prep, pairs, RMLoss.bt, {"rm/human_preferences": 1})
    if cfg.rm.samples_per_prompt < 2:
        raise ValueError(
            f"bt_pref simulates preferences from two pi_SFT samples per prompt: "
            f"rm.samples_per_prompt={cfg.rm.samples_per_prompt} must be >= 2"
        )
    two = [rs[:2] for rs in rm_responses(ctx, prep, Source.sft)]
    golden = next(iter(prep.goldens.values()))
    pairs, truthful = simulated_preference_pairs(
        ids, prompts, two, score_pool(golden, prompts, two), cfg.rm.flip_rate, cfg.seed
    )
    if not pairs:
        raise ValueError(
            f"bt_pref: the simulated annotator (golden {golden.name}) scored both pi_SFT samples equal for "
            f"all {len(two)} RM prompts, so there is no preference to learn; use a golden reward that "
            "separates them or more prompts (dataset.rm_size)"
        )
    truth = [
        p if ok else RMPair(p.prompt_id, p.prompt, p.negative, p.positive) for p, ok in zip(pairs, truthful)
    ]
    extra = {"rm/human_preferences": 0, "rm/label_agreement": float(truthful.mean())}
    return reward_model_bon(ctx, prep, pairs, RMLoss.bt, extra, truth=truth)
