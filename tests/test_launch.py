"""Launching: the shipped Hydra launcher and accelerate configs, a real parallel sweep through the joblib
launcher, and a real two-process data-parallel run (CPU, gloo) that writes only from the main process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CONF_DIR, tiny_overrides, wandb_run_record

AFD = str(Path(sys.executable).with_name("afd"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}


@pytest.mark.parametrize(
    "launcher,target,key",
    [
        ("parallel", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs"),
        ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "gpus_per_node"),
    ],
)
def test_launcher_configs_compose(compose, launcher, target, key):
    cfg = compose([f"hydra/launcher={launcher}", "experiment=embedded_rm_variants"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == target
    assert cfg.hydra.launcher[key] >= 1


def test_slurm_launcher_takes_partition_gpus_and_time_as_config(compose, monkeypatch):
    monkeypatch.setenv("AFD_SLURM_PARTITION", "a100")
    cfg = compose(
        ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=8", "hydra.launcher.timeout_min=60"],
        return_hydra_config=True,
    )
    launcher = cfg.hydra.launcher
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("a100", 8, 60)


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF_DIR / "accelerate").glob("*.yaml")))
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(CONF_DIR / "accelerate" / f"{name}.yaml"))
    assert cfg.num_processes > 1 and cfg.mixed_precision == "bf16"


def _jobs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.slow
def test_joblib_launcher_runs_a_sweep_in_parallel(tiny_model_dir, tmp_path):
    sweep = tmp_path / "multirun"
    cmd = [
        AFD,
        "-m",
        "hydra/launcher=parallel",
        "objective=sft",
        "seed=0,1",
        "compute.threads=1",
        *tiny_overrides(tiny_model_dir, tmp_path / "cache"),
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    assert [j.name for j in _jobs(sweep)] == ["0_sft_seed0", "1_sft_seed1"]
    for job in _jobs(sweep):
        assert "eval/golden_mean" in json.loads((job / "metrics.json").read_text())


@pytest.mark.slow
def test_submitit_launcher_runs_a_sweep_as_jobs_with_grouped_wandb_runs(tiny_model_dir, tmp_path):
    """hydra/launcher=submitit_local: the SLURM launcher's code path (pickled job, submitit's job
    environment, results collected from its folder) without a scheduler."""
    sweep = tmp_path / "multirun"
    cmd = [
        AFD,
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=20",
        "objective=sft",
        "seed=0,1",
        "compute.threads=1",
        "logger=wandb",
        *tiny_overrides(tiny_model_dir, tmp_path / "cache"),
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((sweep / ".submitit").glob("*/*_result.pkl")), "jobs ran through submitit"
    assert [j.name for j in _jobs(sweep)] == ["0_sft_seed0", "1_sft_seed1"]
    runs = [wandb_run_record(next((job / "wandb").glob("offline-run-*"))) for job in _jobs(sweep)]
    for job, run in zip(_jobs(sweep), runs):
        assert "eval/golden_mean" in json.loads((job / "metrics.json").read_text())
        # Grouped by experiment (the default one here), typed by objective.
        assert (run.run_group, run.job_type) == ("default", "sft")
    assert runs[0].run_id != runs[1].run_id


@pytest.mark.slow
def test_two_processes_train_together_and_only_the_main_process_writes(tiny_model_dir, tmp_path):
    """What `accelerate launch` does on GPUs (it hands multi-GPU launches to torchrun), on CPU with gloo:
    both ranks run the pipeline and train together; one run directory, one W&B run, complete cache."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    cmd = [
        str(Path(sys.executable).with_name("torchrun")),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "afd",
        "objective=sft",
        "compute.threads=1",
        *tiny_overrides(tiny_model_dir, cache),
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("cache miss: sft") == 2, "both ranks ran (and trained) SFT"
    assert "eval/golden_mean" in json.loads((run_dir / "metrics.json").read_text())
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1, "one W&B run, from the main process"
    # Every cache entry was published once and complete; no rank left a partial build behind.
    assert list(cache.glob("sft/*/spec.json"))
    assert not list(cache.glob("*/.*partial*"))


def _perturbed_copy(model_dir: Path, dest: Path) -> Path:
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, dest)
    weights = load_file(str(dest / "model.safetensors"))
    torch.manual_seed(1)
    save_file(
        {k: v + 0.05 * torch.randn_like(v) for k, v in weights.items()}, str(dest / "model.safetensors")
    )
    return dest


@pytest.mark.slow
def test_two_processes_share_sampling_and_scoring_and_get_what_one_gets(tiny_model_dir, tmp_path):
    """Pools, classifier scores and KL estimates from 2 gloo processes (each computing every other decode
    group / scoring batch) equal a single process's exactly: the same units, gathered in order."""
    reference = _perturbed_copy(tiny_model_dir, tmp_path / "reference")
    script = Path(__file__).parent / "fixtures" / "sharded_work.py"
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    results = {}
    for world in (1, 2):
        out = tmp_path / f"world{world}" / "result.json"
        out.parent.mkdir()
        cmd = [torchrun, "--standalone", f"--nproc_per_node={world}", str(script)]
        cmd += [str(tiny_model_dir), str(reference), str(out), str(tmp_path / f"cache{world}")]
        proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[world] = json.loads(out.read_text())
    one, two = results[1], results[2]
    assert (one["world"], two["world"]) == (1, 2)
    assert len(one["pool"]) == 11 and all(len(rs) == 3 for rs in one["pool"])
    assert len({r for rs in one["pool"] for r in rs}) > 11, "a real pool, not one response repeated"
    assert two["pool"] == one["pool"]
    assert two["scores"] == one["scores"]
    assert two["kl"] == one["kl"] and any(abs(k) > 1e-3 for k in one["kl"])
