"""(negative, positive) response pairs matched by prompt: the data of the paper's "RM choice" table
(section 3) and of DPO. A reward model's BCE loss reads a pair's two responses as labelled points (0 and
1), its Bradley-Terry loss and DPO read it as (rejected, chosen).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Pair:
    prompt_id: str
    prompt: list
    positive: str
    negative: str

    def swapped(self) -> Pair:
        return Pair(self.prompt_id, self.prompt, self.negative, self.positive)


def matched_pairs(
    prompt_ids: Sequence[str],
    prompts: Sequence[list],
    negatives: Sequence[Sequence[str]],
    positives: Sequence[Sequence[str]],
) -> list[Pair]:
    """For each prompt, as many pairs as the larger side has responses, cycling the smaller one (a
    demonstration is one response), so both labels weigh the same."""
    pairs = []
    for pid, prompt, neg, pos in zip(prompt_ids, prompts, negatives, positives):
        for j in range(max(len(pos), len(neg))):
            pairs.append(Pair(pid, list(prompt), pos[j % len(pos)], neg[j % len(neg)]))
    return pairs


def preference_pairs(
    prompt_ids: Sequence[str], prompts: Sequence[list], chosen: Sequence[str], rejected: Sequence[str]
) -> list[Pair]:
    """Human preference pairs (HH chosen / rejected)."""
    return [Pair(pid, list(p), c, r) for pid, p, c, r in zip(prompt_ids, prompts, chosen, rejected)]


def simulated_preference_pairs(
    prompt_ids: Sequence[str],
    prompts: Sequence[list],
    samples: Sequence[Sequence[str]],
    golden_scores: Sequence[Sequence[float]],
    flip_rate: float,
    seed: int,
) -> tuple[list[Pair], np.ndarray]:
    """A simulated annotator: of each consecutive two pi_SFT samples of a prompt (the 1st and 2nd, the
    3rd and 4th, ...), prefers the one with the higher golden score, then flips the label with probability
    `flip_rate` (noisy labels, the paper's motivation). Ties are skipped.

    Returns the pairs and, for each, whether its label agrees with the golden reward.
    """
    ordered = []
    for pid, prompt, ss, g in zip(prompt_ids, prompts, samples, golden_scores):
        for j in range(0, len(ss) - 1, 2):
            if g[j] == g[j + 1]:
                continue
            better, worse = (ss[j], ss[j + 1]) if g[j] > g[j + 1] else (ss[j + 1], ss[j])
            ordered.append(Pair(pid, list(prompt), better, worse))
    return flip_labels(ordered, flip_rate, seed)


def flip_labels(pairs: Sequence[Pair], flip_rate: float, seed: int) -> tuple[list[Pair], np.ndarray]:
    """Each pair's positive and negative swapped with probability `flip_rate`; returns the noisy pairs
    and, for each, whether it kept its label."""
    rng = np.random.default_rng(seed)
    flipped = rng.random(len(pairs)) < flip_rate
    return [p.swapped() if f else p for p, f in zip(pairs, flipped)], ~flipped


def is_heldout(prompt_id: str, fraction: float, seed: int) -> bool:
    """Held-out membership by prompt (all pairs of a prompt on one side), stable across variants."""
    h = int(hashlib.sha1(f"{seed}:{prompt_id}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def split_heldout(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    train = [p for p in pairs if not is_heldout(p.prompt_id, fraction, seed)]
    heldout = [p for p in pairs if is_heldout(p.prompt_id, fraction, seed)]
    return train, heldout


def warn_pairs_over_length(
    tokenizer, pairs: Sequence[Pair], max_length: int, what: str, consequence: str
) -> None:
    """A WARNING with counts for the chosen (positive) and rejected (negative) conversations longer than
    model.max_length tokens, saying what the trainer does with them."""
    from afd.generation.prompts import warn_over_length

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
