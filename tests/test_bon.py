"""Exact Best-of-N estimators against brute-force enumeration of every size-N subset."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from afd.analysis.bon import (
    bon_curve,
    bon_kl_bound,
    bon_weights,
    curve_metrics,
    default_n_grid,
    expected_bon,
    expected_bon_winrate,
)
from afd.analysis.stats import mean_ci


def brute_force_bon(proxy, values, N):
    """Mean over all C(M, N) subsets of the value of the pick; ties among maxima broken uniformly."""
    proxy, values = np.asarray(proxy), np.asarray(values, dtype=np.float64)
    total, count = 0.0, 0
    for subset in itertools.combinations(range(len(proxy)), N):
        idx = np.array(subset)
        top = idx[proxy[idx] == proxy[idx].max()]
        total += values[top].mean()  # uniform tie-break among the tied maxima of this subset
        count += 1
    return total / count


def brute_force_bon_permutations(proxy, values, N):
    """Same expectation, ties broken by a uniformly random strict order: average over every tie order."""
    proxy = np.asarray(proxy, dtype=np.float64)
    results = []
    for perm in itertools.permutations(range(len(proxy))):
        # Secondary key `perm` gives a strict order consistent with proxy; all orders equally likely.
        strict = np.lexsort((np.array(perm), proxy)).argsort().astype(np.float64)
        results.append(brute_force_bon(strict, values, N))
    return float(np.mean(results))


def random_pool(rng, M, ties):
    if ties:
        proxy = rng.integers(0, 3, size=M).astype(np.float64)  # few distinct values: many ties
    else:
        proxy = rng.normal(size=M)
    return proxy, rng.normal(size=M)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("M", [1, 2, 3, 5, 8])
def test_expected_bon_matches_enumeration(M, ties):
    rng = np.random.default_rng(100 * M + ties)
    for _ in range(4):
        proxy, golden = random_pool(rng, M, ties)
        for N in range(1, M + 1):
            assert expected_bon(proxy, golden, N) == pytest.approx(
                brute_force_bon(proxy, golden, N), abs=1e-12
            )


def test_tie_rule_matches_random_strict_orders():
    # Averaging the golden of tied maxima per subset equals averaging over all uniformly random tie orders,
    # so both brute forces (and the exact estimator) define the same target.
    proxy = np.array([1.0, 2.0, 2.0, 0.0, 2.0])
    golden = np.array([0.3, -1.0, 4.0, 2.0, 0.5])
    for N in range(1, 6):
        exact = expected_bon(proxy, golden, N)
        assert exact == pytest.approx(brute_force_bon(proxy, golden, N), abs=1e-12)
        assert exact == pytest.approx(brute_force_bon_permutations(proxy, golden, N), abs=1e-12)


def test_ties_are_not_broken_by_position():
    # A tie-unaware argsort would always pick the last (or first) tied element; here that changes the answer.
    proxy = np.array([1.0, 1.0])
    assert expected_bon(proxy, np.array([0.0, 10.0]), 2) == pytest.approx(5.0)
    assert expected_bon(proxy, np.array([10.0, 0.0]), 2) == pytest.approx(5.0)


def test_edge_cases_n1_and_nm():
    rng = np.random.default_rng(0)
    proxy, golden = rng.normal(size=7), rng.normal(size=7)
    assert expected_bon(proxy, golden, 1) == pytest.approx(golden.mean())
    assert expected_bon(proxy, golden, 7) == pytest.approx(golden[np.argmax(proxy)])
    proxy_tied = np.array([3.0, 1.0, 3.0, 2.0])
    golden_tied = np.array([1.0, 9.0, 2.0, 9.0])
    assert expected_bon(proxy_tied, golden_tied, 4) == pytest.approx(1.5)


@pytest.mark.parametrize("M", [1, 2, 5, 8, 13])
def test_weights_closed_form(M):
    for N in range(1, M + 1):
        w = bon_weights(M, N)
        expected = [math.comb(i - 1, N - 1) / math.comb(M, N) for i in range(1, M + 1)]
        assert w.shape == (M,)
        np.testing.assert_allclose(w, expected, rtol=1e-12, atol=0)
        assert np.all(w >= 0)
        assert w.sum() == pytest.approx(1.0, abs=1e-12)


def test_weights_uniform_and_point_mass():
    np.testing.assert_allclose(bon_weights(6, 1), np.full(6, 1 / 6))
    np.testing.assert_array_equal(bon_weights(6, 6), [0, 0, 0, 0, 0, 1])


def test_weights_stable_for_large_pools():
    M, N = 2000, 1000
    w = bon_weights(M, N)
    assert np.all(np.isfinite(w)) and np.all(w >= 0)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(w[: N - 1] == 0) and w[-1] == pytest.approx(N / M)
    # Exact rational check of a few weights where the raw binomials overflow float64.
    denom = math.comb(M, N)
    for i in (N, N + 1, 1500, 1900, M):
        exact = float(Fraction(math.comb(i - 1, N - 1), denom))
        assert w[i - 1] == pytest.approx(exact, rel=1e-9, abs=1e-300)
    w_big = bon_weights(8000, 3)
    assert np.all(np.isfinite(w_big)) and w_big.sum() == pytest.approx(1.0, abs=1e-12)


def test_weights_are_readonly_copies():
    w = bon_weights(4, 2)
    w[:] = 0  # mutating the returned array must not corrupt later calls
    assert bon_weights(4, 2).sum() == pytest.approx(1.0)


@pytest.mark.parametrize(("M", "N"), [(5, 0), (5, 6), (1, 2), (3, -1)])
def test_n_out_of_range_raises(M, N):
    with pytest.raises(ValueError, match=rf"N={N}.*M={M}"):
        bon_weights(M, N)
    with pytest.raises(ValueError, match=rf"N={N}.*M={M}"):
        expected_bon(np.zeros(M), np.zeros(M), N)


def test_bad_inputs_raise():
    with pytest.raises(TypeError):
        bon_weights(5, 2.5)
    with pytest.raises(ValueError, match="shape"):
        expected_bon(np.zeros(3), np.zeros(4), 1)
    with pytest.raises(ValueError, match="finite"):
        expected_bon(np.array([0.0, np.nan]), np.zeros(2), 1)
    with pytest.raises(ValueError, match="finite"):
        expected_bon_winrate(np.zeros(2), np.zeros(2), float("nan"), 1)


@pytest.mark.parametrize("ties", [False, True])
def test_winrate_matches_enumeration(ties):
    rng = np.random.default_rng(7 + ties)
    for M in (1, 4, 7):
        proxy, golden = random_pool(rng, M, ties)
        golden = np.round(golden, 1)  # golden ties with the reference exercise the 0.5 case
        for reference in (0.0, float(golden[0]), 5.0):
            win = np.where(golden > reference, 1.0, np.where(golden == reference, 0.5, 0.0))
            for N in range(1, M + 1):
                got = expected_bon_winrate(proxy, golden, reference, N)
                assert got == pytest.approx(brute_force_bon(proxy, win, N), abs=1e-12)
                assert 0.0 <= got <= 1.0


def test_winrate_values():
    proxy = np.array([0.0, 1.0, 2.0])
    golden = np.array([1.0, 2.0, 3.0])
    assert expected_bon_winrate(proxy, golden, 2.0, 1) == pytest.approx(0.5)  # (0 + 0.5 + 1) / 3
    assert expected_bon_winrate(proxy, golden, 2.0, 3) == pytest.approx(1.0)
    assert expected_bon_winrate(proxy, golden, 9.0, 3) == pytest.approx(0.0)


@pytest.mark.parametrize("ties", [False, True])
def test_monotone_when_proxy_is_golden(ties):
    rng = np.random.default_rng(11)
    for _ in range(5):
        golden = rng.integers(0, 4, size=50).astype(float) if ties else rng.normal(size=50)
        values = [expected_bon(golden, golden, N) for N in range(1, 51)]
        assert np.all(np.diff(values) >= -1e-12)
        assert values[0] == pytest.approx(golden.mean()) and values[-1] == pytest.approx(golden.max())
        assert values[-1] > values[0]


def test_independent_proxy_gives_flat_curve():
    # Averaged over every ordering of an independent proxy, the pick is a uniform draw: flat at the mean.
    golden = np.array([0.5, -2.0, 3.0, 1.0, 0.25])
    for N in range(1, 6):
        avg = np.mean([expected_bon(np.array(p, float), golden, N) for p in itertools.permutations(range(5))])
        assert avg == pytest.approx(golden.mean(), abs=1e-12)


def test_kl_bound_and_grid():
    assert bon_kl_bound(1) == 0.0
    assert bon_kl_bound(4) == pytest.approx(math.log(4) - 0.75)
    assert all(bon_kl_bound(n + 1) > bon_kl_bound(n) for n in range(1, 50))
    with pytest.raises(ValueError):
        bon_kl_bound(0)
    assert default_n_grid(16) == [1, 2, 4, 8, 16]
    assert default_n_grid(20) == [1, 2, 4, 8, 16, 20]
    assert default_n_grid(1) == [1]
    assert default_n_grid(3) == [1, 2, 3]
    with pytest.raises(ValueError):
        default_n_grid(0)


def test_bon_curve_rows_and_metrics():
    rng = np.random.default_rng(3)
    P, M = 6, 8
    golden = rng.normal(size=(P, M))
    proxy = golden + 0.5 * rng.normal(size=(P, M))
    refs = {"demo": rng.normal(size=P), "sft_sample": golden[:, 0]}
    rows = bon_curve(proxy, golden, [1, 4, 8], references=refs)
    assert [r["n"] for r in rows] == [1, 4, 8]
    for row in rows:
        N = row["n"]
        per_prompt = [expected_bon(proxy[p], golden[p], N) for p in range(P)]
        ci = mean_ci(per_prompt)
        assert row["golden_mean"] == pytest.approx(ci.mean)
        assert (row["golden_ci_low"], row["golden_ci_high"]) == pytest.approx((ci.ci_low, ci.ci_high))
        assert row["golden_ci_low"] <= row["golden_mean"] <= row["golden_ci_high"]
        assert row["kl_bound"] == pytest.approx(bon_kl_bound(N))
        for name, ref in refs.items():
            wins = [expected_bon_winrate(proxy[p], golden[p], ref[p], N) for p in range(P)]
            wci = mean_ci(wins)
            assert row[f"winrate_vs_{name}_mean"] == pytest.approx(wci.mean)
            assert row[f"winrate_vs_{name}_ci_low"] == pytest.approx(wci.ci_low)
            assert row[f"winrate_vs_{name}_ci_high"] == pytest.approx(wci.ci_high)
    assert rows[0]["golden_mean"] == pytest.approx(golden.mean())

    metrics = curve_metrics(rows)
    expected_keys = set()
    for N in (1, 4, 8):
        expected_keys |= {f"bon/golden@{N}", f"bon/golden@{N}_ci_low", f"bon/golden@{N}_ci_high"}
        expected_keys.add(f"bon/kl_bound@{N}")
        for name in refs:
            base = f"bon/winrate_vs_{name}@{N}"
            expected_keys |= {base, f"{base}_ci_low", f"{base}_ci_high"}
    assert set(metrics) == expected_keys
    assert metrics["bon/golden@4"] == rows[1]["golden_mean"]
    assert metrics["bon/winrate_vs_sft_sample@8_ci_high"] == rows[2]["winrate_vs_sft_sample_ci_high"]
    assert all(isinstance(v, float) for v in metrics.values())


def test_bon_curve_ragged_pools_and_errors():
    proxy = [np.array([0.0, 1.0, 2.0]), np.array([2.0, 0.0, 1.0, 1.0, 3.0])]
    golden = [np.array([1.0, 2.0, 3.0]), np.array([5.0, 1.0, 2.0, 4.0, 0.0])]
    rows = bon_curve(proxy, golden, [1, 3])
    assert rows[1]["golden_mean"] == pytest.approx(
        np.mean([brute_force_bon(proxy[0], golden[0], 3), brute_force_bon(proxy[1], golden[1], 3)])
    )
    assert set(rows[0]) == {"n", "n_prompts", "kl_bound", "golden_mean", "golden_ci_low", "golden_ci_high"}
    with pytest.raises(ValueError, match="N=4"):
        bon_curve(proxy, golden, [4])
    with pytest.raises(ValueError, match="reference"):
        bon_curve(proxy, golden, [1], references={"demo": np.zeros(3)})
    with pytest.raises(ValueError):
        bon_curve(np.zeros(4), np.zeros(4), [1])
