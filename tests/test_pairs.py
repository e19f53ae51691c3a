"""Pairs per reward-model variant (which responses are positive or negative), matched by prompt, and the
simulated annotator: afd/data/pairs.py and the pairs a config names (afd/stages/pairs.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import afd.stages.pairs as stage_pairs
from afd.config import to_run_config
from afd.config.stages import LabelNoise, PairsConfig, RewardModelConfig, Source
from afd.data.pairs import (
    Pair,
    flip_labels,
    matched_pairs,
    pairwise_accuracy,
    simulated_preference_pairs,
    split_heldout,
)
from afd.runtime.errors import UserError
from afd.stages.pairs import build_pairs

IDS = ["p0", "p1"]
PROMPTS = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "yo"}]]
RESPONSES = {
    Source.init: [["init-0a", "init-0b"], ["init-1a", "init-1b"]],
    Source.sft: [["sft-0a", "sft-0b"], ["sft-1a", "sft-1b"]],
    Source.demo: [["demo-0"], ["demo-1"]],
}

# The paper's "RM choice" table: objective -> (negative = label 0, positive = label 1).
PAPER_TABLE = {
    "irl_init_sft": (Source.init, Source.sft),
    "irl_init_demo": (Source.init, Source.demo),
    "irl_sft_demo": (Source.sft, Source.demo),
}


def test_the_paper_table(compose, tmp_path):
    table = {}
    for objective in PAPER_TABLE:
        cfg = to_run_config(compose([f"objective={objective}", f"paths.output_dir={tmp_path}"]))
        reward = cfg.objective.reward
        assert isinstance(reward, RewardModelConfig)
        assert reward.pairs.noise is None, "pairs of samples and demonstrations carry no label noise"
        table[cfg.objective.name] = (reward.pairs.negatives, reward.pairs.positives)
    assert table == PAPER_TABLE


def fake_prep(monkeypatch, responses=RESPONSES, **split_columns):
    """A Prepared stand-in whose policies "sample" `responses` (checked to be asked for on align)."""
    asked = []

    def sample_split(ctx, handle, split_name, split, n):
        asked.append((handle.name, split_name, n))
        return responses[Source(handle.name)]

    monkeypatch.setattr(stage_pairs, "sample_split", sample_split)
    align = {
        "prompt_id": IDS,
        "prompt": PROMPTS,
        "demonstration": [d for (d,) in responses[Source.demo]],
        # The example schema: chosen/rejected are None where the data have no human preferences.
        "chosen": [None] * len(IDS),
        "rejected": [None] * len(IDS),
        **split_columns,
    }
    prep = SimpleNamespace(
        splits={"align": align},
        init=SimpleNamespace(name="init"),
        sft=SimpleNamespace(name="sft"),
    )
    return prep, asked


@pytest.mark.parametrize("objective", list(PAPER_TABLE))
def test_variant_pairs_label_the_right_sources(monkeypatch, objective):
    negative, positive = PAPER_TABLE[objective]
    prep, asked = fake_prep(monkeypatch)
    built = build_pairs(None, prep, PairsConfig(negatives=negative, positives=positive, samples_per_prompt=2))
    pairs = built.pairs
    assert built.truth is None and built.metrics == {}
    sampled = [s for s in (negative, positive) if s is not Source.demo]
    assert sorted(asked) == sorted((s.value, "align", 2) for s in sampled)
    assert len(pairs) == 4, "two pairs per prompt: the larger source's count"
    for p in pairs:
        assert p.positive.startswith(positive.value) and p.negative.startswith(negative.value)
        # Matched by prompt: both responses belong to the pair's prompt.
        idx = p.prompt_id[-1]
        assert f"-{idx}" in p.positive and f"-{idx}" in p.negative
        assert p.prompt == PROMPTS[int(idx)]
    # Every sampled response is used exactly once on its side.
    if positive is not Source.demo:
        assert sorted(p.positive for p in pairs) == sorted(sum(RESPONSES[positive], []))
    assert sorted(p.negative for p in pairs) == sorted(sum(RESPONSES[negative], []))


def test_demo_is_cycled_to_balance_labels():
    pairs = matched_pairs(IDS, PROMPTS, RESPONSES[Source.init], RESPONSES[Source.demo])
    assert [p.positive for p in pairs] == ["demo-0", "demo-0", "demo-1", "demo-1"]
    assert [p.negative for p in pairs] == ["init-0a", "init-0b", "init-1a", "init-1b"]


def test_human_preferences_are_the_pairs_and_flips_keep_the_truth(monkeypatch):
    chosen, rejected = ["good-0", "good-1"], ["bad-0", "bad-1"]
    prep, asked = fake_prep(monkeypatch, chosen=chosen, rejected=rejected)
    cfg = PairsConfig(negatives=Source.rejected, positives=Source.chosen, noise=LabelNoise(flip_rate=0.1))
    clean = build_pairs(SimpleNamespace(cfg=SimpleNamespace(seed=0)), prep, cfg)
    assert [(p.positive, p.negative) for p in clean.pairs] == list(zip(chosen, rejected))
    assert clean.truth is None and clean.metrics == {"reward/human_preferences": 1}
    assert asked == [], "human preferences need no samples"

    cfg.noise.human_flip_rate = 1.0
    noisy = build_pairs(SimpleNamespace(cfg=SimpleNamespace(seed=0)), prep, cfg)
    assert [(p.positive, p.negative) for p in noisy.pairs] == list(zip(rejected, chosen))
    assert noisy.truth == clean.pairs
    assert noisy.metrics == {"reward/human_preferences": 1, "reward/label_agreement": 0.0}


class EndsInA:
    """A golden reward preferring the "...a" sample of each pair."""

    name = "ends_in_a"

    def score(self, prompts, responses):
        return np.array([float(r.endswith("a")) for r in responses])


def test_without_human_preferences_the_simulated_annotator_labels_sft_samples(monkeypatch):
    prep, asked = fake_prep(monkeypatch)
    prep.primary_golden = EndsInA()
    cfg = PairsConfig(negatives=Source.rejected, positives=Source.chosen, noise=LabelNoise(flip_rate=0.0))
    built = build_pairs(SimpleNamespace(cfg=SimpleNamespace(seed=0)), prep, cfg)
    assert asked == [("sft", "align", 2)]
    assert [(p.prompt_id, p.positive, p.negative) for p in built.pairs] == [
        ("p0", "sft-0a", "sft-0b"),
        ("p1", "sft-1a", "sft-1b"),
    ]
    assert built.truth == built.pairs
    assert built.metrics == {"reward/human_preferences": 0, "reward/label_agreement": 1.0}


def test_preference_pairs_exist_on_align_only(monkeypatch):
    prep, _ = fake_prep(monkeypatch)
    cfg = PairsConfig(negatives=Source.rejected, positives=Source.chosen, noise=LabelNoise())
    with pytest.raises(UserError, match="align split only"):
        build_pairs(None, prep, cfg, split_name="train")


def test_simulated_annotator_prefers_the_golden_better_sample_and_flips_at_the_rate():
    n = 4000
    ids = [f"p{i}" for i in range(n)]
    prompts = [[{"role": "user", "content": str(i)}] for i in range(n)]
    samples = [["a", "b"]] * n
    golden = np.tile([[1.0, 0.0]], (n, 1))
    clean, truthful = simulated_preference_pairs(ids, prompts, samples, golden, 0.0, seed=0)
    assert all(p.positive == "a" and p.negative == "b" for p in clean) and truthful.all()
    noisy, truthful = simulated_preference_pairs(ids, prompts, samples, golden, 0.2, seed=0)
    flipped = np.array([p.positive == "b" for p in noisy])
    assert np.array_equal(flipped, ~truthful)
    assert abs(flipped.mean() - 0.2) < 0.03


def test_simulated_annotator_skips_ties():
    pairs, truthful = simulated_preference_pairs(
        ["a", "b"], PROMPTS, [["x", "y"], ["x", "y"]], np.array([[0.5, 0.5], [0.1, 0.9]]), 0.0, seed=0
    )
    assert [(p.prompt_id, p.positive) for p in pairs] == [("b", "y")] and truthful.tolist() == [True]


def test_simulated_annotator_pairs_consecutive_samples():
    pairs, truthful = simulated_preference_pairs(
        ["p"], PROMPTS[:1], [["s0", "s1", "s2", "s3", "s4"]], np.array([[0, 1, 3, 2, 9.0]]), 0.0, seed=0
    )
    assert [(p.positive, p.negative) for p in pairs] == [("s1", "s0"), ("s2", "s3")]
    assert truthful.tolist() == [True, True]


def test_heldout_is_by_prompt_and_stable():
    pairs = matched_pairs(
        [f"p{i}" for i in range(200)],
        [[{"role": "user", "content": str(i)}] for i in range(200)],
        [["n1", "n2"]] * 200,
        [["s1", "s2"]] * 200,
    )
    train, heldout = split_heldout(pairs, 0.2, seed=0)
    assert {p.prompt_id for p in train}.isdisjoint({p.prompt_id for p in heldout})
    assert len(train) + len(heldout) == len(pairs)
    assert 0.1 < len(heldout) / len(pairs) < 0.3
    assert split_heldout(pairs, 0.2, seed=0) == (train, heldout)


def test_pairwise_accuracy_counts_ties_half():
    assert pairwise_accuracy(np.array([1.0, 0.0, 2.0]), np.array([0.0, 0.0, 3.0])) == pytest.approx(0.5)


def test_flip_labels_swaps_at_the_rate_and_reports_which():
    pairs = [Pair(f"p{i}", [{"role": "user", "content": str(i)}], "chosen", "rejected") for i in range(4000)]
    noisy, kept = flip_labels(pairs, 0.3, seed=1)
    swapped = np.array([p.positive == "rejected" and p.negative == "chosen" for p in noisy])
    assert np.array_equal(swapped, ~kept)
    assert noisy == [p.swapped() if s else p for p, s in zip(pairs, swapped)]
    assert abs(swapped.mean() - 0.3) < 0.03
    assert flip_labels(pairs, 0.0, seed=1)[0] == pairs
