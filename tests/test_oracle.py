"""objective=oracle: Best-of-N by the golden reward itself is the ceiling of every Best-of-N curve."""

from __future__ import annotations

import json

import numpy as np
from omegaconf import OmegaConf

from afd.analysis.bon import expected_bon
from afd.config import to_run_config
from afd.data import load_splits
from afd.main import run
from afd.rewards.golden import Harmless

from conftest import tiny_overrides


def test_oracle_best_of_n_is_the_exact_expected_maximum_of_the_pool(compose, tiny_model_dir, tmp_path):
    cache = tmp_path / "cache"
    cfg = compose(
        [
            *tiny_overrides(tiny_model_dir, cache),
            "objective=oracle",
            "golden=[harmless]",
            "logger=none",
            f"paths.output_dir={tmp_path / 'out'}",
        ]
    )
    run_cfg = to_run_config(cfg)
    metrics = run(run_cfg, OmegaConf.to_container(cfg, resolve=True))
    # The pool: pi_SFT's 4 samples per test prompt, read from its cache entry and scored here.
    (pool,) = [
        [json.loads(line)["responses"] for line in (p.parent / "samples.jsonl").read_text().splitlines()]
        for p in (cache / "sample").glob("*/spec.json")
        if (spec := json.loads(p.read_text()))["split"] == "test" and "sft" in spec["policy"]
    ]
    prompts = list(load_splits(run_cfg.dataset)["test"]["prompt"])
    golden = np.array([Harmless().score([p] * len(rs), rs) for p, rs in zip(prompts, pool)])
    # With the golden reward as proxy, BoN@N is the expected maximum of N of a prompt's pool scores.
    for n in (1, 2, 4):
        expected = np.mean([expected_bon(g, g, n) for g in golden])
        assert np.isclose(metrics[f"bon/golden@{n}"], expected), n
    assert np.isclose(metrics["bon/golden@4"], golden.max(axis=1).mean())
    assert metrics["bon/winrate_vs_sft@4"] >= metrics["bon/winrate_vs_sft@2"] >= 0.5
