"""Every config option and experiment composes into the typed schema; an objective's config holds only
what it uses; typos fail at compose time, values out of range at validation."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from afd.config import ConfigError, to_run_config, validate
from afd.config.run import RunConfig
from afd.objectives import objective_modules
from afd.objectives.adversarial import AdversarialObjective
from afd.objectives.best_of_n import BestOfNObjective
from afd.objectives.dpo import DPOObjective
from afd.objectives.rl import RLObjective
from afd.objectives.sft import SFTObjective
from afd.rewards import reward_kinds
from afd.rewards.kinds.log_ratio import LogRatioConfig
from afd.runtime.preflight import expand_sweep

from conftest import CONF_DIR, objective_schemas

GROUPS = ["objective", "model", "dataset", "golden", "logger", "budget", "debug", "task", "experiment"]
# Options that need a user value (a path) before they convert to the typed schema.
NEEDS_VALUE = {
    ("model", "custom"): ["model.name_or_path=/some/dir"],
    ("dataset", "jsonl"): ["dataset.path=/some/file.jsonl"],
}
# What every run has, whatever its objective: nothing objective-specific at the top level.
RUN_KEYS = {
    "objective",
    "model",
    "dataset",
    "golden",
    "logger",
    "sampling",
    "scoring",
    "eval",
    "compute",
    "paths",
    "experiment",
    "seed",
}
POLICY = {"stability", "evaluation"}
# Each objective module's nodes: the stages it runs, nothing else.
OBJECTIVE_NODES = {
    SFTObjective: {"name", "sft"},
    BestOfNObjective: {"name", "sft", "reward", "best_of_n", "judge"},
    DPOObjective: {"name", "sft", "pairs", "dpo", *POLICY},
    RLObjective: {"name", "sft", "reward", "rl", *POLICY},
    AdversarialObjective: {"name", "sft", "discriminator", "rl", "adversarial", *POLICY},
}
SCHEMAS = objective_schemas()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _option_override(group: str, name: str) -> str:
    return f"{group}=[{name}]" if group == "golden" else f"{group}={name}"


@pytest.mark.parametrize("group,name", [(g, n) for g in GROUPS for n in options(g)])
def test_every_option_composes_and_converts(compose, group, name):
    extra = NEEDS_VALUE.get((group, name), [])
    cfg = compose([_option_override(group, name), "paths.output_dir=/tmp/afd-test", *extra])
    run = to_run_config(cfg)
    assert isinstance(run, RunConfig)
    assert run.golden, "at least one golden reward is always selected"


@pytest.mark.parametrize("budget", options("budget"))
def test_every_objective_at_every_budget_validates(compose, budget):
    for objective in options("objective"):
        validate(to_run_config(compose([f"objective={objective}", f"budget={budget}", "paths.output_dir=x"])))


def test_groups_are_not_empty():
    for g in GROUPS:
        assert options(g), g


def test_every_objective_file_maps_to_exactly_one_module(compose):
    modules = objective_modules()
    for name in options("objective"):
        objective = to_run_config(compose([f"objective={name}", "paths.output_dir=x"])).objective
        assert objective.name == name, "file name == objective name"
        owners = [m for schema, m in modules.items() if isinstance(objective, schema)]
        assert len(owners) == 1, (name, owners)
    assert len({m.__name__ for m in modules.values()}) == len(modules), "one schema per module"


@pytest.mark.parametrize("objective", options("objective"))
def test_an_objective_config_holds_only_what_it_uses(compose, objective):
    """What `afd --cfg job objective=X` prints: the run's shared nodes, and the objective's own stages;
    a reward node holds its kind's fields only (a log-ratio no trainer, length and random nothing)."""
    cfg = compose([f"objective={objective}", "paths.output_dir=x"])
    assert set(cfg) == RUN_KEYS, "no objective knobs at the top level"
    assert set(cfg.objective) == OBJECTIVE_NODES[SCHEMAS[objective]]
    if "reward" in cfg.objective:
        kind = OmegaConf.get_type(cfg.objective.reward)
        assert kind in reward_kinds()
        assert set(cfg.objective.reward) == {f.name for f in dataclasses.fields(kind)}
    reward = to_run_config(cfg).objective.reward if "reward" in cfg.objective else None
    if isinstance(reward, LogRatioConfig):
        assert "trainer" not in cfg.objective.reward


def test_afd_cfg_job_prints_the_objectives_knobs_only(tmp_path):
    afd = str(Path(sys.executable).with_name("afd"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [afd, "--cfg", "job", "objective=sft"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    printed = yaml.safe_load(out.stdout)
    assert set(printed["objective"]) == {"name", "sft"} and set(printed) == RUN_KEYS
    assert list(tmp_path.iterdir()) == [], "printing the config runs nothing"


def test_reward_variants_are_the_papers_rm_choice_table(compose):
    table = {
        "irl_init_sft": ("init", "sft", "bce"),
        "irl_init_demo": ("init", "demo", "bce"),
        "irl_sft_demo": ("sft", "demo", "bce"),
        "bt_pref": ("rejected", "chosen", "bt"),
    }
    for objective, (negatives, positives, loss) in table.items():
        reward = to_run_config(compose([f"objective={objective}", "paths.output_dir=x"])).objective.reward
        assert (reward.pairs.negatives.value, reward.pairs.positives.value, reward.loss.value) == (
            negatives,
            positives,
            loss,
        )
    rl = to_run_config(compose(["objective=rl_rm", "objective/reward=init_demo", "paths.output_dir=x"]))
    assert rl.objective.reward.pairs.positives.value == "demo", "objective/reward picks RL's reward"


def test_budgets_reach_every_stage(compose):
    fast = to_run_config(compose(["objective=adversarial", "debug=fast", "paths.output_dir=x"])).objective
    assert (fast.sft.trainer.max_steps, fast.discriminator.trainer.max_steps, fast.rl.trainer.max_steps) == (
        2,
        2,
        2,
    )
    gpu = to_run_config(
        compose(["objective=irl_init_sft", "task=hh_harmless_gpt2", "paths.output_dir=x"])
    ).objective
    assert (
        gpu.best_of_n.pool_size,
        gpu.reward.pairs.samples_per_prompt,
        gpu.sft.trainer.num_train_epochs,
    ) == (
        500,
        10,
        2,
    )
    gemma = to_run_config(
        compose(["objective=irl_init_sft", "task=hh_helpful_gemma2b", "paths.output_dir=x"])
    )
    assert (
        gemma.objective.reward.lora.enabled and gemma.objective.sft.trainer.per_device_train_batch_size == 8
    )
    on_cli = to_run_config(compose(["objective=sft", "debug=fast", "budget=embedded", "paths.output_dir=x"]))
    assert on_cli.objective.sft.trainer.max_steps == -1, "the command line's budget wins over debug's"


@pytest.mark.parametrize(
    "override",
    [
        "objective.sft.trainer.learning_rat=1e-4",
        "model.nme=x",
        "sampling.top_p=high",
        "objective.name=[1]",
        "seed=one",
        "objective.reward.pairs.negatives=nope",
    ],
)
def test_typos_and_bad_types_fail_at_compose(compose, override):
    with pytest.raises(ConfigCompositionException) as e:
        compose([override])
    key = override.split("=")[0].split(".")[-1]
    assert key in str(e.value) + str(e.value.__cause__) or "nope" in str(e.value.__cause__)


def test_an_objective_knob_another_objective_has_is_a_typo(compose):
    with pytest.raises(ConfigCompositionException, match="best_of_n"):
        compose(["objective=sft", "objective.best_of_n.pool_size=4"])


def test_unknown_option_names_the_group(compose):
    with pytest.raises(MissingConfigException, match="model/llama9"):
        compose(["model=llama9"])


def test_missing_user_value_names_the_key(compose):
    cfg = compose(["model=custom", "paths.output_dir=/tmp/x"])
    with pytest.raises(MissingMandatoryValue, match="model.name_or_path"):
        to_run_config(cfg)


def test_several_golden_rewards_at_once(compose):
    run = to_run_config(compose(["golden=[upbeat,harmless]", "paths.output_dir=/tmp/x"]))
    assert list(run.golden) == ["upbeat", "harmless"]


def test_sweep_dirs_cannot_collide_within_a_second(compose):
    hydra = compose([], return_hydra_config=True).hydra
    # Resolved now: microseconds in the time stamp.
    assert re.fullmatch(r"multirun/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}-\d{6}_default", hydra.sweep.dir)
    assert re.fullmatch(r"outputs/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}-\d{6}_irl_init_sft", hydra.run.dir)
    assert OmegaConf.to_container(hydra.sweep)["subdir"].startswith("${hydra.job.num}")


@pytest.mark.parametrize(
    "override,key",
    [
        ("objective.best_of_n.n_grid=[1,64]", "objective.best_of_n.n_grid"),
        ("sampling.top_p=1.5", "sampling.top_p"),
        (
            "objective=bt_pref objective.reward.pairs.noise.flip_rate=-0.1",
            "objective.reward.pairs.noise.flip_rate",
        ),
        ("dataset.test_size=0", "dataset.test_size"),
        ("+objective.sft.trainer.trl_args.warmup_stepz=3", "objective.sft.trainer.trl_args.warmup_stepz"),
        ("+objective.reward.trainer.trl_args.seed=3", "objective.reward.trainer.trl_args.seed"),
        ("objective.reward.pairs.negatives=sft", "objective.reward.pairs.negatives"),
        ("objective=dpo_pref objective.dpo.split=train", "objective.dpo.split"),
        ("objective=rl_rm objective.rl.trainer.per_device_train_batch_size=6", "objective.rl.trainer"),
        (
            "objective=rl_rm +objective.rl.trainer.trl_args.not_a_field=1",
            "objective.rl.trainer.trl_args.not_a_field",
        ),
        (
            "objective=adversarial objective.discriminator.pairs.negatives=init",
            "objective.discriminator.pairs",
        ),
    ],
)
def test_out_of_range_values_fail_before_anything_loads(compose, override, key):
    run = to_run_config(compose([*override.split(), "paths.output_dir=/tmp/x"]))
    with pytest.raises(ConfigError, match=re.escape(key)):
        validate(run)


def test_defaults_and_every_experiment_validate(compose):
    for name in options("experiment"):
        validate(to_run_config(compose([f"experiment={name}", "paths.output_dir=/tmp/x"])))
    validate(
        to_run_config(compose(["+objective.sft.trainer.trl_args.warmup_steps=3", "paths.output_dir=/tmp/x"]))
    )


def sweep_jobs(cfg) -> list[list[str]]:
    """The override list of every job of an experiment's grid, expanded exactly as `afd -m` expands it."""
    return expand_sweep([f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()])


@pytest.mark.parametrize("name", options("experiment"))
def test_every_job_of_every_experiment_grid_composes_and_validates(compose, name):
    """Paper ablations: each experiment declares its grid (objectives and at least two seeds), and every
    job of it composes into a valid run, without loading a model."""
    grid = compose([f"experiment={name}"], return_hydra_config=True)
    jobs = sweep_jobs(grid)
    seeds = {o for job in jobs for o in job if o.startswith("seed=")}
    assert len(seeds) >= 2, f"experiment {name}: sweep at least two seeds, got {sorted(seeds)}"
    assert any(o.startswith("objective=") for o in jobs[0]), f"experiment {name}: no objective in its grid"
    for job in jobs:
        run = to_run_config(compose([f"experiment={name}", *job, "paths.output_dir=/tmp/x"]))
        validate(run)
        assert run.experiment == name, f"experiment {name}: job {job} is grouped as {run.experiment!r}"
        for override in job:
            key, value = override.split("=", 1)
            if key not in ("task", "objective"):
                assert str(OmegaConf.select(OmegaConf.structured(run), key)) in (value, "None"), (
                    name,
                    override,
                )


def test_gpu_experiments_run_on_a_paper_task_and_embedded_ones_on_the_default(compose):
    """The GPU-sized experiment and its embedded_ twin sweep the same grid on different tasks."""
    for name in options("experiment"):
        grid = compose([f"experiment={name}"], return_hydra_config=True)
        task = grid.hydra.runtime.choices.get("task")
        if name.startswith("embedded_"):
            assert task is None and grid.model.name == "smollm2_135m", name
        elif name != "task":
            assert task in options("task"), f"experiment {name} picks no paper task (task={task})"
