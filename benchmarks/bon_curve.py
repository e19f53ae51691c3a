"""Cost of a full Best-of-N curve against the pool size M: the exact estimator (afd/bon.py) evaluates
every N on one pool, so the cost grows with M (about M log M over the N grid), not with one pool per N."""

from __future__ import annotations

import numpy as np

from afd.analysis.bon import bon_curve, default_n_grid
from benchmarks.common import Row, timed


def run(pool_sizes=(16, 64, 256, 1024, 4096), n_prompts: int = 64, repeats: int = 3) -> list[Row]:
    rng = np.random.default_rng(0)
    rows, per_sample = [], {}
    for m in pool_sizes:
        proxy, golden = rng.normal(size=(n_prompts, m)), rng.normal(size=(n_prompts, m))
        refs = {"sft": rng.normal(size=n_prompts)}
        grid = default_n_grid(m)
        bon_curve(proxy, golden, grid, refs)  # warm-up (and the rank-weight cache)
        seconds, _ = timed(lambda a=(proxy, golden, grid, refs): bon_curve(*a), repeats)
        per_sample[m] = seconds / (n_prompts * m)
        rows.append(
            Row(
                f"BoN curve M={m} ({len(grid)} N values)",
                seconds * 1e3,
                None,
                "ms",
                higher_is_better=False,
                note=(
                    f"{per_sample[m] * 1e6:.2f} us per pool sample"
                    + (
                        f"; exact estimator on random scores, {n_prompts} prompts, N = 1, 2, 4 ... M, golden "
                        "mean and win rate vs a reference with CIs, one pool of M per prompt for all N"
                        if m == pool_sizes[0]
                        else ""
                    )
                ),
            )
        )
    first, last = pool_sizes[0], pool_sizes[-1]
    print(
        f"[bon curve] M x{last // first}: time x{per_sample[last] * last / (per_sample[first] * first):.1f}",
        flush=True,
    )
    return rows
