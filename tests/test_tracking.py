"""W&B runs: grouped by experiment, typed by objective, tagged with the commit, always finished."""

from __future__ import annotations

import pytest

from afd.config import to_run_config
from afd.runtime.tracking import git_commit, tracking


def test_wandb_run_carries_group_type_tag_config_and_finishes_on_failure(compose, tmp_path):
    import wandb

    cfg = to_run_config(compose(["experiment=embedded_rm_variants", f"paths.output_dir={tmp_path}"]))
    resolved = {"seed": cfg.seed, "objective": {"name": cfg.objective.name}}
    with pytest.raises(RuntimeError, match="job failed"):
        with tracking(cfg, tmp_path, resolved) as tracker:
            run = tracker.run
            assert run.group == "embedded_rm_variants"
            assert run.job_type == "irl_init_sft"
            assert f"git:{git_commit()}" in run.tags
            assert run.config["objective"]["name"] == "irl_init_sft"
            raise RuntimeError("job failed")
    assert wandb.run is None, "the run must be finished even though the job raised"
    assert len(list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))) == 1


def test_logger_none_writes_no_wandb_files(compose, tmp_path):
    cfg = to_run_config(compose(["logger=none", f"paths.output_dir={tmp_path}"]))
    with tracking(cfg, tmp_path, {}) as tracker:
        tracker.log({"x": 1})
    assert not (tmp_path / "wandb").exists()
