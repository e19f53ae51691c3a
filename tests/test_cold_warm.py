"""A result is a function of the config and the inputs, never of what the stage cache held.

For every objective: a run on a cold cache, then the same config with only its upstream entries kept
(pi_SFT and the de-quantised model), give identical metrics. For the KL-regularised trainers (DPO, SPIN
iteration 2, GRPO, RLOO, the adversarial rounds) the reference model each TRL trainer ends up with is
compared, parameter by parameter, with the policy the objective names, on both caches. pi_SFT is trained
with a large learning rate so that it differs from pi_init: a reference built from the wrong weights
cannot pass.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import trl
from omegaconf import OmegaConf
from safetensors.torch import load_file

from afd.config import to_run_config
from afd.main import run

from conftest import objective_schemas, tiny_overrides

KL_TRAINERS = (trl.DPOTrainer, trl.GRPOTrainer, trl.RLOOTrainer)
# What the cold run's upstream is: pi_SFT and the models it was trained from.
UPSTREAM = {"sft", "models"}
# Every objective (an objective added later is covered too), plus RLOO and two adversarial rounds.
OBJECTIVES = {name: [] for name in objective_schemas()}
OBJECTIVES.update(
    {
        "rl_rm": ["objective.rl.algorithm=grpo"],
        "rl_rm_rloo": ["objective.rl.algorithm=rloo"],
        "adversarial": ["objective.adversarial.rounds=2"],
    }
)
KL_OBJECTIVES = {"dpo_demo", "spin", "dpo_pref", "rl_rm", "rl_rm_rloo", "adversarial"}


@pytest.fixture
def references(monkeypatch):
    """[(trainer class, ref_model state dict)] for every KL trainer that starts training, in order."""
    seen: list[tuple[str, dict[str, torch.Tensor]]] = []
    for cls in KL_TRAINERS:

        def spy(self, *args, _train=cls.train, **kwargs):
            assert self.ref_model is not None, f"{type(self).__name__} has no reference model"
            state = {k: v.detach().clone() for k, v in self.ref_model.state_dict().items()}
            seen.append((type(self).__name__, state))
            return _train(self, *args, **kwargs)

        monkeypatch.setattr(cls, "train", spy)
    return seen


def weights(entry: Path) -> dict[str, torch.Tensor]:
    return load_file(str(entry / "model.safetensors"))


def assert_same_weights(ref: dict[str, torch.Tensor], intended: dict[str, torch.Tensor], what: str) -> None:
    assert intended, what
    for key, value in intended.items():
        assert key in ref, f"{what}: the reference lacks {key}"
        assert torch.equal(ref[key].float(), value.float()), f"{what}: {key} differs"


def run_objective(compose, model_dir: Path, cache: Path, out: Path, objective: str, extra: list[str]) -> dict:
    name = "rl_rm" if objective == "rl_rm_rloo" else objective
    cfg = compose(
        [
            *tiny_overrides(model_dir, cache),
            f"objective={name}",
            # A pi_SFT far from pi_init, so a reference built from the base model is caught.
            "objective.sft.trainer.learning_rate=3e-2",
            "objective.sft.trainer.max_steps=4",
            "golden=[harmless]",
            "logger=none",
            f"paths.output_dir={out}",
            *extra,
        ]
    )
    return run(to_run_config(cfg), OmegaConf.to_container(cfg, resolve=True))


def keep_only_upstream(cache: Path) -> None:
    for stage in cache.iterdir():
        if stage.name not in UPSTREAM and not stage.name.startswith(".") and stage.is_dir():
            shutil.rmtree(stage)


def intended_references(cache: Path, objective: str) -> list[dict[str, torch.Tensor]]:
    """The policies the objective's KL trainers must regularise towards, in training order."""
    (sft_entry,) = [p for p in (cache / "sft").iterdir() if not p.name.startswith(".")]
    sft = weights(sft_entry)
    if objective == "spin":
        # SPIN: iteration 1 is referenced to pi_SFT, iteration 2 to iteration 1's policy.
        (it1,) = [
            p
            for p in (cache / "dpo").iterdir()
            if not p.name.startswith(".")
            and json.loads((p / "spec.json").read_text())["policy"] == {"sft": sft_entry.name}
        ]
        return [sft, weights(it1)]
    if objective == "adversarial":
        return [sft, sft]  # every round to the starting policy (adversarial.start=sft)
    return [sft]


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_cold_and_upstream_only_caches_give_identical_results(
    compose, tiny_model_dir, tmp_path, references, objective
):
    extra = OBJECTIVES[objective]
    cache = tmp_path / "cache"
    cold = run_objective(compose, tiny_model_dir, cache, tmp_path / "cold", objective, extra)
    cold_refs = [state for _, state in references]
    intended_cold = intended_references(cache, objective)

    keep_only_upstream(cache)
    references.clear()
    warm = run_objective(compose, tiny_model_dir, cache, tmp_path / "warm", objective, extra)
    warm_refs = [state for _, state in references]

    assert warm == cold, "same config, same inputs: the same metrics whatever the cache held"
    if objective not in KL_OBJECTIVES:
        assert cold_refs == warm_refs == []
        return
    assert len(cold_refs) == len(warm_refs) == len(intended_cold)
    base = weights(tiny_model_dir)
    for i, intended in enumerate(intended_cold):
        assert_same_weights(cold_refs[i], intended, f"cold cache, trainer {i + 1}")
        assert_same_weights(warm_refs[i], intended, f"upstream-only cache, trainer {i + 1}")
        assert any(not torch.equal(intended[k], base[k]) for k in intended), "the reference is not pi_init"
