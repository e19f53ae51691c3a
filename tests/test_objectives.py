"""Every objective end to end on the tiny model, sharing one stage cache as a sweep does."""

from __future__ import annotations

import csv
import logging

import pytest
from omegaconf import OmegaConf

from afd.config import Objective, to_run_config
from afd.main import run

from conftest import tiny_overrides

# Objectives that end with Best-of-N on the pi_SFT pool (the others train a policy: test_dpo.py).
BON_OBJECTIVES = [
    o
    for o in Objective
    if o not in {Objective.sft, Objective.dpo_demo, Objective.dpo_pref, Objective.rl_rm, Objective.reverse_kl}
]
RM_OBJECTIVES = {Objective.irl_init_sft, Objective.irl_init_demo, Objective.irl_sft_demo, Objective.bt_pref}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sweep_cache")


@pytest.mark.parametrize("objective", BON_OBJECTIVES, ids=lambda o: o.value)
def test_objective_runs_and_reports_an_exact_bon_curve(
    compose, tiny_model_dir, shared_cache, tmp_path, caplog, objective
):
    # harmless (a classifier's probability) separates gibberish samples; VADER scores them all 0.
    overrides = [
        *tiny_overrides(tiny_model_dir, shared_cache),
        f"objective={objective.value}",
        "golden=[harmless]",
    ]
    cfg = compose([*overrides, "logger=none", f"paths.output_dir={tmp_path}"])
    with caplog.at_level(logging.INFO, logger="afd.cache"):
        metrics = run(to_run_config(cfg), OmegaConf.to_container(cfg, resolve=True))

    # BoN@1 is the pool mean, i.e. pi_SFT's golden mean, exactly; its win rate against pi_SFT is 1/2.
    assert metrics["bon/golden@1"] == pytest.approx(metrics["eval/harmless/sft/mean"])
    assert metrics["bon/winrate_vs_sft@1"] == pytest.approx(0.5)
    assert metrics["eval/golden_mean"] == metrics["bon/golden@4"] and metrics["bon/max_n"] == 4
    assert metrics["bon/kl_bound@4"] == pytest.approx(1.386294 - 0.75, abs=1e-5)
    for n in [1, 2, 4]:
        assert 0.0 <= metrics[f"bon/winrate_vs_demo@{n}"] <= 1.0
    with (tmp_path / "bon_curve.csv").open() as f:
        assert [int(r["n"]) for r in csv.DictReader(f)] == [1, 2, 4]
    for png in ["bon_curve.png", "rm_scores.png", "golden_eval.png"]:
        assert (tmp_path / png).stat().st_size > 1000
    assert {"rm_scores/base/mean", "rm_scores/sft/mean", "rm_scores/demo/mean", "rm_scores/bon/mean"} <= set(
        metrics
    )
    # The BoN pick has the highest proxy score in its pool, so its mean is at least the pool's.
    assert metrics["rm_scores/bon/mean"] >= metrics["rm_scores/sft/mean"] - 1e-9
    if objective in RM_OBJECTIVES | {Objective.log_ratio}:
        assert 0.0 <= metrics["rm/accuracy"] <= 1.0
        assert (metrics.get("rm/train_pairs", 0) > 0) == (objective in RM_OBJECTIVES)
    if objective is not BON_OBJECTIVES[0]:
        # A sweep over objectives redoes neither SFT nor the pools.
        assert "cache hit: sft" in caplog.text and "cache miss: sft" not in caplog.text
