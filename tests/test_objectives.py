"""Every objective end to end on the tiny model, sharing one stage cache as a sweep does."""

from __future__ import annotations

import csv
import logging

import pytest
from omegaconf import OmegaConf

from afd.config import to_run_config
from afd.main import run
from afd.objectives.best_of_n import BestOfNObjective

from conftest import objective_schemas, tiny_overrides

# Every objective that ends with Best-of-N on the pi_SFT pool (the others train a policy).
# One worker runs these: they share a stage cache as a sweep does (`make test` distributes tests).
pytestmark = pytest.mark.xdist_group("objectives_share_a_cache")
BON_OBJECTIVES = [name for name, schema in objective_schemas().items() if schema is BestOfNObjective]
RM_OBJECTIVES = {"irl_init_sft", "irl_init_demo", "irl_sft_demo", "bt_pref"}


def test_the_best_of_n_objectives_include_the_papers(compose):
    assert {*RM_OBJECTIVES, "log_ratio", "length", "random"} <= set(BON_OBJECTIVES)


@pytest.fixture(scope="module")
def shared_cache(tiny_model_dir, tmp_path_factory):
    """A stage cache holding pi_SFT and its pool, as after a sweep's first job (the sft objective)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from conftest import CONF_DIR

    cache = tmp_path_factory.mktemp("sweep_cache")
    out = tmp_path_factory.mktemp("sweep_first_job")
    overrides = [
        *tiny_overrides(tiny_model_dir, cache),
        "objective=random",
        "golden=[harmless]",
        "logger=none",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=[*overrides, f"paths.output_dir={out}"])
    run(to_run_config(cfg), OmegaConf.to_container(cfg, resolve=True))
    return cache


@pytest.mark.parametrize("objective", BON_OBJECTIVES)
def test_objective_runs_and_reports_an_exact_bon_curve(
    compose, tiny_model_dir, shared_cache, tmp_path, caplog, objective
):
    # harmless (a classifier's probability) separates gibberish samples; VADER scores them all 0.
    overrides = [
        *tiny_overrides(tiny_model_dir, shared_cache),
        f"objective={objective}",
        "golden=[harmless]",
    ]
    cfg = compose([*overrides, "logger=none", f"paths.output_dir={tmp_path}"])
    with caplog.at_level(logging.INFO, logger="afd.runtime.cache"):
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
    for png in ["bon_curve.png", "reward_scores.png", "golden_eval.png"]:
        assert (tmp_path / png).stat().st_size > 1000
    groups = ["init", "sft", "demo", "bon"]
    assert {f"reward_scores/{g}/mean" for g in groups} <= set(metrics)
    # The BoN pick has the highest proxy score in its pool, so its mean is at least the pool's.
    assert metrics["reward_scores/bon/mean"] >= metrics["reward_scores/sft/mean"] - 1e-9
    if objective in RM_OBJECTIVES | {"log_ratio"}:
        assert 0.0 <= metrics["reward/accuracy"] <= 1.0
        assert (metrics.get("reward/train_pairs", 0) > 0) == (objective in RM_OBJECTIVES)
    # A sweep over objectives redoes neither SFT nor the pool.
    assert "cache hit: sft" in caplog.text and "cache miss: sft" not in caplog.text
