"""The SFT stage (forward KL) on the tiny model: it trains, leaves pi_init untouched, and caches."""

from __future__ import annotations

import json
import math

import pytest
import torch

from afd.data import load_splits
from afd.models.policies import init_policy
from afd.stages.sft import sft_dataset, train_sft

from conftest import tiny_overrides


def _train(make_context, tiny_model_dir, tmp_path, extra=()):
    overrides = [
        *tiny_overrides(tiny_model_dir, tmp_path / "cache"),
        "objective=sft",
        "objective.sft.trainer.max_steps=3",
    ]
    ctx = make_context([*overrides, *extra])
    train = load_splits(ctx.cfg.dataset)["train"]
    init = init_policy(ctx)
    before = {k: v.clone() for k, v in init.get()[0].state_dict().items()}
    sft = train_sft(ctx, init, train, ctx.cfg.objective.sft)
    return ctx, init, before, sft, train


def test_sft_trains_every_parameter_and_keeps_pi_init(make_context, tiny_model_dir, tmp_path):
    ctx, init, before, sft, train = _train(make_context, tiny_model_dir, tmp_path)
    log = json.loads((sft.path / "train_log.json").read_text())
    losses = [h["loss"] for h in log if "loss" in h]
    assert losses and all(math.isfinite(x) for x in losses)
    trained = sft.get()[0].state_dict()
    unchanged = [k for k, v in before.items() if torch.equal(v, trained[k])]
    assert unchanged == [], f"parameters SFT did not update: {unchanged}"
    # pi_init is still pi_init: later stages sample and score it.
    assert all(torch.equal(v, init.get()[0].state_dict()[k]) for k, v in before.items())
    # The saved policy reloads to the same weights through the user-model path.
    sft.release()
    reloaded = sft.get()[0].state_dict()
    assert all(torch.allclose(reloaded[k], trained[k]) for k in trained)


def test_sft_masks_the_prompt():
    import datasets

    rows = datasets.Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": "hi"}]], "demonstration": ["hello there"]}
    )
    out = sft_dataset(rows)
    assert out[0]["completion"] == [{"role": "assistant", "content": "hello there"}]
    assert out[0]["prompt"] == [{"role": "user", "content": "hi"}]


def test_sft_with_lora_saves_merged_weights(make_context, tiny_model_dir, tmp_path):
    _, _, before, sft, _ = _train(
        make_context,
        tiny_model_dir,
        tmp_path,
        ["model.lora.enabled=true", "model.lora.r=4", "objective.sft.trainer.learning_rate=1e-2"],
    )
    assert not (sft.path / "adapter_config.json").exists(), "the entry itself is a plain merged model"
    assert (sft.path / "adapter" / "adapter_config.json").exists(), "the adapters are kept beside it"
    merged = sft.get()[0].state_dict()
    changed = [k for k, v in before.items() if "proj" in k and not torch.allclose(v, merged[k])]
    assert changed, "merged LoRA deltas must change the projection weights"
    assert torch.equal(before["model.embed_tokens.weight"], merged["model.embed_tokens.weight"])


@pytest.mark.parametrize("knob", ["objective.sft.trainer.learning_rate=1e-3", "seed=1"])
def test_sft_cache_misses_on_a_changed_knob(make_context, tiny_model_dir, tmp_path, knob):
    _, _, _, first, _ = _train(make_context, tiny_model_dir, tmp_path)
    _, _, _, same, _ = _train(make_context, tiny_model_dir, tmp_path)
    _, _, _, other, _ = _train(make_context, tiny_model_dir, tmp_path, [knob])
    assert first.path == same.path != other.path


def test_a_validation_share_is_held_out_and_scored_every_epoch(make_context, tiny_model_dir, tmp_path):
    from afd.data.pairs import is_heldout
    from afd.stages.sft import sft_metrics

    ctx = make_context(
        [
            *tiny_overrides(tiny_model_dir, tmp_path / "cache"),
            "objective=sft",
            "objective.sft.validation_fraction=0.25",
            "objective.sft.trainer.num_train_epochs=2",
            "objective.sft.trainer.max_steps=-1",
        ]
    )
    train = load_splits(ctx.cfg.dataset)["train"]
    sft = train_sft(ctx, init_policy(ctx), train, ctx.cfg.objective.sft)
    held = [pid for pid in train["prompt_id"] if is_heldout(pid, 0.25, ctx.cfg.seed)]
    spec = json.loads((sft.path / "spec.json").read_text())
    assert spec["validation"] == held and 0 < len(held) < len(train)
    assert not set(held) & {pid for pid, _ in spec["examples"]}, "validation prompts are not trained on"
    metrics = sft_metrics(sft)
    assert math.isfinite(metrics["sft/validation_loss"]) and metrics["sft/best_validation_epoch"] in (
        1.0,
        2.0,
    )
    evals = [h for h in json.loads((sft.path / "train_log.json").read_text()) if "eval_loss" in h]
    assert [h["epoch"] for h in evals] == [1.0, 2.0]


def test_sft_gain_is_paired_by_prompt_and_warns_when_it_is_not_resolved(caplog):
    import logging

    import numpy as np

    from afd.stages.evaluate import sft_gain

    init = np.array([[0.1, 0.3], [0.5, 0.5], [0.0, 0.2]])
    better = {"init": init, "sft": init + np.array([[0.2], [0.25], [0.3]])}
    gain = sft_gain(better, 0.95, "upbeat")
    assert gain["eval/sft_gain/mean"] == pytest.approx(0.25) and gain["eval/sft_gain/ci_low"] > 0
    with caplog.at_level(logging.WARNING):
        same = sft_gain({"init": init, "sft": init[::-1]}, 0.95, "upbeat")
    assert same["eval/sft_gain/ci_low"] < 0 and "SFT did not measurably learn" in caplog.text


def test_bf16_autocast_learns_what_fp32_learns(make_context, tiny_model_dir, tmp_path):
    """compute.precision=bf16 (fp32 master weights, bf16 autocast) against fp32 over the same 4 steps:
    the per-step losses agree to 2% (bf16 keeps 8 bits of mantissa: about 0.4% per rounding). Catches a
    bf16 path that trains something else (wrong batches, no autocast, weights cast to bf16)."""
    logs = {}
    for precision in ("fp32", "bf16"):
        extra = [
            f"compute.precision={precision}",
            "objective.sft.trainer.max_steps=4",
            "objective.sft.trainer.logging_steps=1",
        ]
        ctx, _, _, sft, _ = _train(make_context, tiny_model_dir, tmp_path / precision, extra)
        assert ctx.bf16 is (precision == "bf16")
        assert next(sft.get()[0].parameters()).dtype == torch.float32, "master weights stay fp32"
        logs[precision] = [
            h["loss"] for h in json.loads((sft.path / "train_log.json").read_text()) if "loss" in h
        ]
    assert len(logs["fp32"]) == 4
    assert logs["bf16"] == pytest.approx(logs["fp32"], rel=0.02)
    assert logs["bf16"] != logs["fp32"], "the bf16 run really ran under autocast"


def test_activation_checkpointing_trains_the_same_steps(make_context, tiny_model_dir, tmp_path, monkeypatch):
    """Recomputing activations in the backward pass changes memory, not what is learned: the same
    per-step losses and final weights as keeping them. Catches a knob that never reaches the model (the
    enabling call is recorded) or a recomputation that differs (dropout, RNG)."""
    from transformers import PreTrainedModel

    enabled = []
    enable = PreTrainedModel.activation_checkpointing_enable

    def record(self, *args, **kwargs):
        enabled.append(type(self).__name__)
        return enable(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "activation_checkpointing_enable", record)
    runs = {}
    for on in (False, True):
        enabled.clear()
        extra = [
            f"objective.sft.trainer.activation_checkpointing={str(on).lower()}",
            "objective.sft.trainer.logging_steps=1",
        ]
        ctx, _, _, sft, _ = _train(make_context, tiny_model_dir, tmp_path / str(on), extra)
        log = json.loads((sft.path / "train_log.json").read_text())
        runs[on] = ([h["loss"] for h in log if "loss" in h], sft.get()[0].state_dict())
        assert bool(enabled) is on, enabled
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-5)
    for name, value in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][name], value, rtol=1e-5, atol=1e-6)
