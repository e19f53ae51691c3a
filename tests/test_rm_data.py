"""Reward-model data per variant (which responses are positive or negative) and the simulated annotator."""

from __future__ import annotations

import numpy as np
import pytest

from afd.config import Objective
from afd.rm_data import (
    IRL_VARIANTS,
    RMPair,
    Source,
    flip_labels,
    pairwise_accuracy,
    simulated_preference_pairs,
    split_heldout,
    variant_pairs,
)

IDS = ["p0", "p1"]
PROMPTS = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "yo"}]]
RESPONSES = {
    Source.init: [["init-0a", "init-0b"], ["init-1a", "init-1b"]],
    Source.sft: [["sft-0a", "sft-0b"], ["sft-1a", "sft-1b"]],
    Source.demo: [["demo-0"], ["demo-1"]],
}


def test_the_paper_table():
    assert IRL_VARIANTS == {
        Objective.irl_init_sft: (Source.init, Source.sft),
        Objective.irl_init_demo: (Source.init, Source.demo),
        Objective.irl_sft_demo: (Source.sft, Source.demo),
    }


@pytest.mark.parametrize("objective", list(IRL_VARIANTS))
def test_variant_pairs_label_the_right_sources(objective):
    negative, positive = IRL_VARIANTS[objective]
    pairs = variant_pairs(IDS, PROMPTS, RESPONSES, negative, positive)
    assert len(pairs) == 4, "two pairs per prompt: the larger source's count"
    for p in pairs:
        assert p.positive.startswith(positive.value) and p.negative.startswith(negative.value)
        # Matched by prompt: both responses belong to the pair's prompt.
        idx = p.prompt_id[-1]
        assert f"-{idx}" in p.positive and f"-{idx}" in p.negative
    # Every sampled response is used exactly once on its side.
    if positive is not Source.demo:
        assert sorted(p.positive for p in pairs) == sorted(sum(RESPONSES[positive], []))
    assert sorted(p.negative for p in pairs) == sorted(sum(RESPONSES[negative], []))


def test_demo_is_cycled_to_balance_labels():
    pairs = variant_pairs(IDS, PROMPTS, RESPONSES, Source.init, Source.demo)
    assert [p.positive for p in pairs] == ["demo-0", "demo-0", "demo-1", "demo-1"]


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


def test_heldout_is_by_prompt_and_stable():
    pairs = variant_pairs(
        [f"p{i}" for i in range(200)],
        [[{"role": "user", "content": str(i)}] for i in range(200)],
        {Source.init: [["n1", "n2"]] * 200, Source.sft: [["s1", "s2"]] * 200},
        Source.init,
        Source.sft,
    )
    train, heldout = split_heldout(pairs, 0.2, seed=0)
    assert {p.prompt_id for p in train}.isdisjoint({p.prompt_id for p in heldout})
    assert 0.1 < len(heldout) / len(pairs) < 0.3
    assert split_heldout(pairs, 0.2, seed=0) == (train, heldout)


def test_pairwise_accuracy_counts_ties_half():
    assert pairwise_accuracy(np.array([1.0, 0.0, 2.0]), np.array([0.0, 0.0, 3.0])) == pytest.approx(0.5)


def test_flip_labels_swaps_at_the_rate_and_reports_which():
    pairs = [
        RMPair(f"p{i}", [{"role": "user", "content": str(i)}], "chosen", "rejected") for i in range(4000)
    ]
    noisy, kept = flip_labels(pairs, 0.3, seed=1)
    swapped = np.array([p.positive == "rejected" and p.negative == "chosen" for p in noisy])
    assert np.array_equal(swapped, ~kept)
    assert abs(swapped.mean() - 0.3) < 0.03
    assert flip_labels(pairs, 0.0, seed=1)[0] == pairs
