"""A random stream per (prompt, sample), so that the samples a prompt gets depend on the prompt, the run's
seed and the sample's index only: not on which other prompts share its batch, on the batch size, or on
how many processes split the prompts between them.

Counter-based: the uniform a sample draws at decode step t is splitmix64(key + (t + 1) * golden gamma),
with the key a 64-bit hash of (seed, the prompt's token ids, the sample's index). No generator state is
carried between calls, so any subset of samples can be drawn in any order and gives the same tokens.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def stream_keys(prompt_ids: Sequence[Sequence[int]], n: int, seed: int) -> np.ndarray:
    """uint64 keys [len(prompt_ids) * n]: sample k of prompt i is row i * n + k."""
    keys = np.empty(len(prompt_ids) * n, dtype=np.uint64)
    for i, ids in enumerate(prompt_ids):
        prompt = hashlib.blake2b(
            np.asarray(ids, dtype=np.int64).tobytes(), digest_size=8, key=str(seed).encode()
        )
        base = int.from_bytes(prompt.digest(), "little")
        for k in range(n):
            digest = hashlib.blake2b(f"{base}:{k}".encode(), digest_size=8).digest()
            keys[i * n + k] = np.uint64(int.from_bytes(digest, "little"))
    return keys


def uniforms(keys: np.ndarray, step: int) -> np.ndarray:
    """float64 uniforms in [0, 1), one per key, for decode step `step` (splitmix64's output function on
    the key's counter; 53 random bits each)."""
    with np.errstate(over="ignore"):
        z = keys + _GAMMA * np.uint64(step + 1)
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
