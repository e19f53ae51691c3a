"""Exact Best-of-N estimators (paper section 3, pipeline step 5: pick by the RM among N pi_SFT samples).

Replaces the paper's averaging over random sub-pools of one sample pool by the exact expectation over all
size-N subsets of the pool, computed from proxy ranks: no Monte-Carlo noise, and one pass per N.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import gammaln

from afd.analysis.stats import mean_ci

__all__ = [
    "bon_curve",
    "bon_kl_bound",
    "bon_weights",
    "curve_metrics",
    "default_n_grid",
    "expected_bon",
    "expected_bon_winrate",
]


def _as_count(value, name: str) -> int:
    # operator.index accepts Python and numpy integers but refuses floats, so N=2.5 cannot be truncated.
    try:
        return operator.index(value)
    except TypeError as exc:
        raise TypeError(f"{name} must be an integer, got {value!r}") from exc


def bon_weights(M: int, N: int) -> np.ndarray:
    """Probability that the element of proxy rank i (ascending, 1-based) is the best of a random N-subset.

    w_i = C(i-1, N-1) / C(M, N) for i = 1..M: the subset must contain rank i and N-1 of the i-1 lower
    ranks, out of C(M, N) equally likely subsets (sampling without replacement). w_i = 0 for i < N, and
    sum_i w_i = 1 by the hockey-stick identity. Computed in log space with log-gamma, since the binomials
    overflow float64 for M in the low thousands; the result is renormalised to remove rounding drift.
    """
    M = _as_count(M, "M")
    N = _as_count(N, "N")
    if not 1 <= N <= M:
        raise ValueError(f"Best-of-N needs 1 <= N <= M, got N={N}, M={M}")
    return _bon_weights_cached(M, N).copy()


@lru_cache(maxsize=256)
def _bon_weights_cached(M: int, N: int) -> np.ndarray:
    # bon_curve asks for the same (M, N) once per prompt; cache it and hand out copies publicly.
    i = np.arange(N, M + 1, dtype=np.float64)  # ranks with non-zero weight
    log_num = gammaln(i) - gammaln(i - N + 1) - gammaln(N)  # log C(i-1, N-1)
    log_den = gammaln(M + 1) - gammaln(N + 1) - gammaln(M - N + 1)  # log C(M, N)
    w = np.zeros(M, dtype=np.float64)
    w[N - 1 :] = np.exp(log_num - log_den)
    w /= w.sum()
    w.setflags(write=False)
    return w


@dataclass(frozen=True)
class _TieBlocks:
    """One prompt's pool grouped by equal proxy score, blocks in ascending proxy order."""

    inverse: np.ndarray  # block index of each pool element
    counts: np.ndarray  # block sizes
    starts: np.ndarray  # 0-based first rank of each block

    @property
    def size(self) -> int:
        return int(self.inverse.size)

    def block_means(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.inverse, weights=values, minlength=self.counts.size) / self.counts

    def block_weights(self, N: int) -> np.ndarray:
        # Probability that the pick falls in each block: the sum of the rank weights the block spans. It does
        # not depend on how ties inside the block are ordered, because the block occupies fixed ranks.
        return np.add.reduceat(_bon_weights_cached(self.size, N), self.starts)


def _tie_blocks(proxy) -> _TieBlocks:
    proxy = np.asarray(proxy, dtype=np.float64)
    if proxy.ndim != 1 or proxy.size == 0:
        raise ValueError(f"proxy must be a non-empty 1-D array, got shape {proxy.shape}")
    if not np.all(np.isfinite(proxy)):
        # NaN would silently sort as the highest score and be picked at every N.
        raise ValueError("proxy scores must be finite")
    _, inverse, counts = np.unique(proxy, return_inverse=True, return_counts=True)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return _TieBlocks(inverse.ravel(), counts, starts)


def _check_values(values, size: int, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},) like proxy, got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} scores must be finite")
    return values


def _win_indicator(golden: np.ndarray, reference: float) -> np.ndarray:
    return np.where(golden > reference, 1.0, np.where(golden == reference, 0.5, 0.0))


def _check_reference(reference_golden) -> float:
    reference = float(reference_golden)
    if not np.isfinite(reference):
        # A NaN reference would compare as a loss against everything and report a win rate of 0.
        raise ValueError(f"reference golden score must be finite, got {reference}")
    return reference


def expected_bon(proxy: np.ndarray, golden: np.ndarray, N: int) -> float:
    """Expected golden score of the Best-of-N pick over all size-N subsets of one prompt's pool.

    E = sum_i C(i-1, N-1) / C(M, N) * golden_(i), with golden_(i) the golden score of proxy rank i
    (ascending). Ties in proxy are broken uniformly at random: each member of a tie block is given the
    block's mean golden score. That is exact because a uniform tie-break is a uniformly random ordering of
    each block over the fixed ranks the block occupies, so each member fills each of those ranks with
    probability 1/|block|, and by linearity E = sum over blocks of (sum of the block's rank weights) *
    (mean golden of the block). Within one subset, this is the same as picking uniformly among tied maxima.
    N=1 gives the pool mean; N=M gives the golden of the argmax-proxy element (ties averaged).
    """
    blocks = _tie_blocks(proxy)
    golden = _check_values(golden, blocks.size, "golden")
    N = _as_count(N, "N")
    if not 1 <= N <= blocks.size:
        raise ValueError(f"Best-of-N needs 1 <= N <= M, got N={N}, M={blocks.size}")
    return float(blocks.block_weights(N) @ blocks.block_means(golden))


def expected_bon_winrate(proxy: np.ndarray, golden: np.ndarray, reference_golden: float, N: int) -> float:
    """Expected win rate of the Best-of-N pick's golden score against one reference golden score.

    Win = 1, tie = 0.5, loss = 0; exact over all size-N subsets: `expected_bon` applied to the per-sample
    win indicator (the expectation of the indicator of the pick is the expected win rate).
    """
    golden = _check_values(golden, np.asarray(golden).size, "golden")
    return expected_bon(proxy, _win_indicator(golden, _check_reference(reference_golden)), N)


def bon_kl_bound(N: int) -> float:
    """Analytic upper bound KL(BoN || pi) <= log N - (N-1)/N (0 at N=1)."""
    N = _as_count(N, "N")
    if N < 1:
        raise ValueError(f"Best-of-N needs N >= 1, got N={N}")
    return float(np.log(N) - (N - 1) / N)


def default_n_grid(M: int) -> list[int]:
    """N = 1, 2, 4, 8, ... (powers of two up to M), plus M itself when M is not a power of two."""
    M = _as_count(M, "M")
    if M < 1:
        raise ValueError(f"pool size M must be >= 1, got M={M}")
    grid = [1 << k for k in range(M.bit_length()) if (1 << k) <= M]
    if grid[-1] != M:
        grid.append(M)
    return grid


def _as_pools(scores, name: str) -> list[np.ndarray]:
    # 2-D (prompts x M) or a sequence of 1-D pools of possibly different sizes.
    if isinstance(scores, np.ndarray) and scores.ndim != 2:
        raise ValueError(f"{name} must be 2-D (prompts x M) or a list of 1-D arrays, got {scores.shape}")
    return [np.asarray(row, dtype=np.float64) for row in scores]


def bon_curve(
    proxy,
    golden,
    n_grid: Sequence[int],
    references: Mapping[str, np.ndarray] | None = None,
    level: float = 0.95,
) -> list[dict]:
    """Best-of-N curve: per N, the exact per-prompt expected golden score, then a CI over prompts.

    proxy, golden: 2-D (prompts x M) or lists of 1-D pools (sizes may differ; every N must be <= each
    pool's size). references: name -> per-prompt reference golden scores (shape prompts); for each, the
    exact per-prompt win rate of the pick (tie = 0.5) and its CI over prompts. Prompts are the independent
    units of the interval, so the CI is `mean_ci` over per-prompt expectations.
    Row keys: n, n_prompts, kl_bound, golden_mean, golden_ci_low, golden_ci_high and, per reference r,
    winrate_vs_{r}_mean, winrate_vs_{r}_ci_low, winrate_vs_{r}_ci_high.
    """
    proxy_pools = _as_pools(proxy, "proxy")
    golden_pools = _as_pools(golden, "golden")
    if len(proxy_pools) != len(golden_pools) or not proxy_pools:
        raise ValueError(
            f"need >= 1 prompt and as many golden as proxy pools, got {len(proxy_pools)} and "
            f"{len(golden_pools)}"
        )
    n_prompts = len(proxy_pools)
    references = dict(references or {})
    ref_arrays = {}
    for name, ref in references.items():
        ref = np.asarray(ref, dtype=np.float64).ravel()
        if ref.shape != (n_prompts,):
            raise ValueError(
                f"reference {name!r} must have one score per prompt ({n_prompts}), got {ref.shape}"
            )
        ref_arrays[name] = ref

    # Tie blocks and block means do not depend on N: compute them once per prompt.
    blocks, golden_means, win_means = [], [], {name: [] for name in ref_arrays}
    for p, (prox, gold) in enumerate(zip(proxy_pools, golden_pools, strict=True)):
        b = _tie_blocks(prox)
        gold = _check_values(gold, b.size, f"golden[{p}]")
        blocks.append(b)
        golden_means.append(b.block_means(gold))
        for name, ref in ref_arrays.items():
            win_means[name].append(b.block_means(_win_indicator(gold, _check_reference(ref[p]))))

    min_pool = min(b.size for b in blocks)
    rows = []
    for N in n_grid:
        N = _as_count(N, "N")
        if not 1 <= N <= min_pool:
            raise ValueError(
                f"Best-of-N needs 1 <= N <= M for every prompt, got N={N}, smallest M={min_pool}"
            )
        weights = [b.block_weights(N) for b in blocks]
        gold_ci = mean_ci([w @ g for w, g in zip(weights, golden_means, strict=True)], level)
        row = {
            "n": N,
            "n_prompts": n_prompts,
            "kl_bound": bon_kl_bound(N),
            "golden_mean": gold_ci.mean,
            "golden_ci_low": gold_ci.ci_low,
            "golden_ci_high": gold_ci.ci_high,
        }
        for name, means in win_means.items():
            win_ci = mean_ci([w @ m for w, m in zip(weights, means, strict=True)], level)
            row[f"winrate_vs_{name}_mean"] = win_ci.mean
            row[f"winrate_vs_{name}_ci_low"] = win_ci.ci_low
            row[f"winrate_vs_{name}_ci_high"] = win_ci.ci_high
        rows.append(row)
    return rows


def curve_metrics(rows: Sequence[Mapping]) -> dict[str, float]:
    """Flatten `bon_curve` rows to `bon/golden@{N}`, `bon/golden@{N}_ci_low`, `..._ci_high`,
    `bon/winrate_vs_{r}@{N}` (with `_ci_low`, `_ci_high`) and `bon/kl_bound@{N}`."""
    metrics: dict[str, float] = {}
    prefix, suffix = "winrate_vs_", "_mean"
    for row in rows:
        N = row["n"]
        metrics[f"bon/golden@{N}"] = float(row["golden_mean"])
        metrics[f"bon/golden@{N}_ci_low"] = float(row["golden_ci_low"])
        metrics[f"bon/golden@{N}_ci_high"] = float(row["golden_ci_high"])
        metrics[f"bon/kl_bound@{N}"] = float(row["kl_bound"])
        for key in row:
            # Reference names may contain underscores, so strip the known prefix/suffix, never split.
            if key.startswith(prefix) and key.endswith(suffix):
                name = key[len(prefix) : -len(suffix)]
                metrics[f"bon/winrate_vs_{name}@{N}"] = float(row[key])
                metrics[f"bon/winrate_vs_{name}@{N}_ci_low"] = float(row[f"{prefix}{name}_ci_low"])
                metrics[f"bon/winrate_vs_{name}@{N}_ci_high"] = float(row[f"{prefix}{name}_ci_high"])
    return metrics
