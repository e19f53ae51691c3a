"""Every config option and experiment composes into the typed schema; typos fail at compose time."""

from __future__ import annotations

import re

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from afd.config import Objective, RunConfig, to_run_config
from afd.objectives import OBJECTIVES

from conftest import CONF_DIR

GROUPS = ["objective", "model", "dataset", "golden", "logger", "debug", "task", "experiment"]
# Options that need a user value (a path) before they convert to the typed schema.
NEEDS_VALUE = {
    ("model", "custom"): ["model.name_or_path=/some/dir"],
    ("dataset", "jsonl"): ["dataset.path=/some/file.jsonl"],
}


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


def test_groups_are_not_empty():
    for g in GROUPS:
        assert options(g), g


def test_every_objective_config_maps_to_exactly_one_runner(compose):
    names = {
        to_run_config(compose([f"objective={o}", "paths.output_dir=/tmp/x"])).objective.name
        for o in options("objective")
    }
    assert names == set(OBJECTIVES) == set(Objective)
    assert {n.value for n in names} == set(options("objective")), "file name == objective name"


@pytest.mark.parametrize(
    "override",
    ["sft.learning_rat=1e-4", "model.nme=x", "sampling.top_p=high", "objective.name=nope", "seed=one"],
)
def test_typos_and_bad_types_fail_at_compose(compose, override):
    with pytest.raises(ConfigCompositionException) as e:
        compose([override])
    assert override.split("=")[0].split(".")[-1] in str(e.value) + str(e.value.__cause__)


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
        ("bon.n_grid=[1,64]", "bon.n_grid"),
        ("sampling.top_p=1.5", "sampling.top_p"),
        ("rm.flip_rate=-0.1", "rm.flip_rate"),
        ("dataset.test_size=0", "dataset.test_size"),
        ("+sft.trl_args.warmup_stepz=3", "sft.trl_args.warmup_stepz"),
        ("+rm.trl_args.seed=3", "rm.trl_args.seed"),
    ],
)
def test_out_of_range_values_fail_before_anything_loads(compose, override, key):
    from afd.config import ConfigError, validate

    run = to_run_config(compose([override, "paths.output_dir=/tmp/x"]))
    with pytest.raises(ConfigError, match=re.escape(key)):
        validate(run)


def test_defaults_and_every_experiment_validate(compose):
    from afd.config import validate

    for name in options("experiment"):
        validate(to_run_config(compose([f"experiment={name}", "paths.output_dir=/tmp/x"])))
    validate(to_run_config(compose(["+sft.trl_args.warmup_steps=3", "paths.output_dir=/tmp/x"])))


def sweep_jobs(cfg) -> list[list[str]]:
    """The override list of every job of an experiment's grid, expanded exactly as `afd -m` expands it."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    return [
        job
        for batch in BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)
        for job in batch
    ]


@pytest.mark.parametrize("name", options("experiment"))
def test_every_job_of_every_experiment_grid_composes_and_validates(compose, name):
    """Paper ablations: each experiment declares its grid (objectives and at least two seeds), and every
    job of it composes into a valid run, without loading a model."""
    from afd.config import validate

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
