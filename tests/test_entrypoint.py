"""The entrypoint end to end on the tiny model: in-process, re-run from the cache, and a real `afd -m`."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from afd.config import to_run_config
from afd.main import run

from conftest import tiny_overrides


def run_in_process(compose, overrides, out: Path) -> dict:
    cfg = compose(["objective=sft", *overrides, f"paths.output_dir={out}"])
    return run(to_run_config(cfg), OmegaConf.to_container(cfg, resolve=True))


def test_sft_run_writes_metrics_tables_plot_and_wandb(compose, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    metrics = run_in_process(compose, tiny_overrides(tiny_model_dir, tmp_path / "cache"), out)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == pytest.approx(metrics)
    for policy in ["init", "sft", "demo"]:
        m = metrics[f"eval/upbeat/{policy}/mean"]
        assert metrics[f"eval/upbeat/{policy}/ci_low"] <= m <= metrics[f"eval/upbeat/{policy}/ci_high"]
        assert metrics[f"eval/upbeat/{policy}/n"] == 8
    assert metrics["eval/golden_mean"] == metrics["eval/upbeat/sft/mean"]
    # Demonstrations passed the upbeat filter (>= 0.5), so their golden mean is at least that.
    assert metrics["eval/upbeat/demo/mean"] >= 0.5
    with (out / "samples.csv").open() as f:
        assert len(list(csv.reader(f))) == 1 + 4
    assert (out / "golden_eval.png").stat().st_size > 1000
    resolved = OmegaConf.load(out / "config.yaml")
    assert resolved.model.name_or_path == str(tiny_model_dir) and "${" not in OmegaConf.to_yaml(resolved)
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1


def test_rerun_reuses_cached_stages(compose, tiny_model_dir, tmp_path, caplog):
    overrides = [*tiny_overrides(tiny_model_dir, tmp_path / "cache"), "logger=none"]
    first = run_in_process(compose, overrides, tmp_path / "a")
    entries = sorted(p.name for p in (tmp_path / "cache").glob("*/*"))
    with caplog.at_level(logging.INFO, logger="afd.runtime.cache"):
        second = run_in_process(compose, overrides, tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "cache").glob("*/*")) == entries
    assert "cache miss" not in caplog.text and caplog.text.count("cache hit") == 3
    assert second == pytest.approx(first)
    # What each run built and what that cost: every stage on the cold run, none on the warm one.
    cold, warm = (json.loads((tmp_path / d / "resources.json").read_text()) for d in "ab")
    published = sorted(spec.parent.parent.name for spec in (tmp_path / "cache").glob("*/*/spec.json"))
    assert sorted(b["stage"] for b in cold["stages"]) == published and len(published) == 3
    assert warm["stages"] == [] and warm["peak_rss_gb"] > 0
    assert all(
        b["process_peak_rss_gb"] + 0.01 >= b["rss_gb_peak"] >= b["rss_gb_start"] > 0 for b in cold["stages"]
    )


def test_afd_multirun_subprocess_writes_one_dir_per_job(tiny_model_dir, tmp_path):
    sweep = tmp_path / "multirun"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    cmd = [
        str(Path(sys.executable).with_name("afd")),
        "-m",
        "objective=sft",
        "seed=0,1",
        *tiny_overrides(tiny_model_dir, tmp_path / "cache"),
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name for j in jobs] == ["0_sft_seed0", "1_sft_seed1"]
    for job in jobs:
        assert "eval/golden_mean" in json.loads((job / "metrics.json").read_text())
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1
