"""Reward-model training pairs for each variant of the paper's "RM choice" table (section 3).

Every example is a (prompt, positive, negative) pair matched by prompt: the BCE loss uses its two
responses as labelled points (1 and 0), the Bradley-Terry loss uses it as a pair.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Mapping, Sequence

import numpy as np

from afd.config import Objective


class Source(str, Enum):
    """Where a response comes from."""

    init = "init"
    """A sample of pi_init (the base model)."""
    sft = "sft"
    """A sample of pi_SFT."""
    demo = "demo"
    """The demonstration."""


# (negative source, positive source): the paper's table, named negative-positive.
IRL_VARIANTS: dict[Objective, tuple[Source, Source]] = {
    Objective.irl_init_sft: (Source.init, Source.sft),
    Objective.irl_init_demo: (Source.init, Source.demo),
    Objective.irl_sft_demo: (Source.sft, Source.demo),
}


@dataclass(frozen=True)
class RMPair:
    prompt_id: str
    prompt: list
    positive: str
    negative: str


def variant_pairs(
    prompt_ids: Sequence[str],
    prompts: Sequence[list],
    responses: Mapping[Source, Sequence[Sequence[str]]],
    negative: Source,
    positive: Source,
) -> list[RMPair]:
    """Pairs for an IRL variant: for each prompt, as many pairs as the larger source has responses,
    cycling the smaller one (a demonstration is one response), so both labels weigh the same."""
    pairs = []
    for i, (pid, prompt) in enumerate(zip(prompt_ids, prompts)):
        pos, neg = responses[positive][i], responses[negative][i]
        for j in range(max(len(pos), len(neg))):
            pairs.append(RMPair(pid, list(prompt), pos[j % len(pos)], neg[j % len(neg)]))
    return pairs


def preference_pairs(
    prompt_ids: Sequence[str], prompts: Sequence[list], chosen: Sequence[str], rejected: Sequence[str]
) -> list[RMPair]:
    """Human preference pairs (HH chosen / rejected)."""
    return [RMPair(pid, list(p), c, r) for pid, p, c, r in zip(prompt_ids, prompts, chosen, rejected)]


def simulated_preference_pairs(
    prompt_ids: Sequence[str],
    prompts: Sequence[list],
    samples: Sequence[Sequence[str]],
    golden_scores: np.ndarray,
    flip_rate: float,
    seed: int,
) -> tuple[list[RMPair], np.ndarray]:
    """A simulated annotator: of two pi_SFT samples per prompt, prefers the one with the higher golden
    score, then flips the label with probability `flip_rate` (noisy labels, the paper's motivation).

    `golden_scores[i]` holds the scores of `samples[i][0]` and `samples[i][1]`. Ties are skipped.
    Returns the pairs and, for each, whether its label agrees with the golden reward.
    """
    ordered = []
    for pid, prompt, two, g in zip(prompt_ids, prompts, samples, golden_scores):
        if g[0] == g[1]:
            continue
        better, worse = (two[0], two[1]) if g[0] > g[1] else (two[1], two[0])
        ordered.append(RMPair(pid, list(prompt), better, worse))
    return flip_labels(ordered, flip_rate, seed)


def flip_labels(pairs: Sequence[RMPair], flip_rate: float, seed: int) -> tuple[list[RMPair], np.ndarray]:
    """Each pair's positive and negative swapped with probability `flip_rate`; returns the noisy pairs
    and, for each, whether it kept its label."""
    rng = np.random.default_rng(seed)
    flipped = rng.random(len(pairs)) < flip_rate
    noisy = [
        RMPair(p.prompt_id, p.prompt, p.negative, p.positive) if f else p for p, f in zip(pairs, flipped)
    ]
    return noisy, ~flipped


def is_heldout(prompt_id: str, fraction: float, seed: int) -> bool:
    """Held-out membership by prompt (all pairs of a prompt on one side), stable across variants."""
    h = int(hashlib.sha1(f"{seed}:{prompt_id}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def split_heldout(pairs: Sequence[RMPair], fraction: float, seed: int) -> tuple[list[RMPair], list[RMPair]]:
    train = [p for p in pairs if not is_heldout(p.prompt_id, fraction, seed)]
    heldout = [p for p in pairs if is_heldout(p.prompt_id, fraction, seed)]
    return train, heldout


def warn_pairs_over_length(
    tokenizer, pairs: Sequence[RMPair], max_length: int, what: str, consequence: str
) -> None:
    """A WARNING with counts for the chosen (positive) and rejected (negative) conversations longer than
    model.max_length tokens, saying what the trainer does with them."""
    from afd.sampling import warn_over_length

    prompts = [p.prompt for p in pairs]
    for label, responses in (
        ("chosen", [p.positive for p in pairs]),
        ("rejected", [p.negative for p in pairs]),
    ):
        warn_over_length(tokenizer, prompts, responses, max_length, f"{what}: {label} responses", consequence)


def pairwise_accuracy(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """Fraction of pairs the reward orders correctly (ties count half)."""
    diff = np.asarray(positive_scores) - np.asarray(negative_scores)
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))
