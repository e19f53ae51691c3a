"""objective=bt_pref: the preference baseline, a Bradley-Terry reward model on chosen/rejected pairs,
then Best-of-N. Without human preferences a simulated annotator labels two pi_SFT samples per prompt
by the primary golden reward and flips rm.flip_rate of the labels (the paper's noisy-label motivation)."""

from __future__ import annotations

from afd.config import Objective, RMLoss
from afd.context import RunContext
from afd.objectives.pipeline import Prepared, finish, preference_data, prepare, trained_reward
from afd.rewards import Reward


def build_reward(
    ctx: RunContext, prep: Prepared, _: Objective = Objective.bt_pref
) -> tuple[Reward, dict[str, float]]:
    """The Bradley-Terry reward model and its held-out accuracy (against the golden order)."""
    prefs = preference_data(ctx, prep)
    return trained_reward(ctx, prep, prefs.pairs, RMLoss.bt, prefs.metrics, "bt_pref RM", truth=prefs.truth)


def run(ctx: RunContext) -> dict[str, float]:
    prep = prepare(ctx)
    return finish(ctx, prep, *build_reward(ctx, prep))
