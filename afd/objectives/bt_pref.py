"""objective=bt_pref: the preference baseline, a Bradley-Terry reward model on chosen/rejected pairs,
then Best-of-N. Without human preferences a simulated annotator labels two pi_SFT samples per prompt
by the primary golden reward and flips rm.flip_rate of the labels (the paper's noisy-label motivation)."""

from __future__ import annotations

from afd.config import RMLoss
from afd.context import RunContext
from afd.objectives.pipeline import preference_data, prepare, reward_model_bon


def run(ctx: RunContext) -> dict[str, float]:
    prep = prepare(ctx)
    prefs = preference_data(ctx, prep)
    return reward_model_bon(ctx, prep, prefs.pairs, RMLoss.bt, prefs.metrics, truth=prefs.truth)
