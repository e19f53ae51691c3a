"""The objective registry: a plain mapping from Objective to the function that runs it.

Each objective module composes stages (afd/stages/) and returns flat `/`-namespaced metrics.
"""

from __future__ import annotations

from typing import Callable

from afd.config import Objective
from afd.context import RunContext
from afd.objectives import bt_pref, dpo, irl, log_ratio, reverse_kl, rl_rm, sanity, sft

OBJECTIVES: dict[Objective, Callable[[RunContext], dict[str, float]]] = {
    Objective.sft: sft.run,
    Objective.irl_init_sft: irl.run,
    Objective.irl_init_demo: irl.run,
    Objective.irl_sft_demo: irl.run,
    Objective.bt_pref: bt_pref.run,
    Objective.log_ratio: log_ratio.run,
    Objective.length: sanity.run,
    Objective.random: sanity.run,
    Objective.dpo_demo: dpo.run,
    Objective.dpo_pref: dpo.run,
    Objective.rl_rm: rl_rm.run,
    Objective.reverse_kl: reverse_kl.run,
}
