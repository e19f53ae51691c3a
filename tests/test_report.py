"""`afd report` on synthetic sweep directories: variants, several sweeps together, the reward-score
diagnostic, and broken jobs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from afd.analysis.jobs import ReportError, load_jobs
from afd.analysis.report import main, report
from afd.analysis.summary import summarise

FLIP = "objective.reward.pairs.noise.flip_rate"
WEIGHTS = "objective.reward.weights"


def make_job(
    root: Path,
    num: int,
    objective: str,
    seed: int,
    golden: list[float] | None,
    overrides: list[str] | None = None,
    reward_scores: dict[str, float] | None = None,
    config: dict | None = None,
) -> Path:
    """A Hydra job directory; `overrides` (without objective and seed, which are added) writes
    .hydra/overrides.yaml, `reward_scores` adds the extrapolation diagnostic's
    `reward_scores/<group>/mean`; `config` adds to the resolved config (its `objective` to the name)."""
    job = root / f"{num}_{objective}_seed{seed}"
    (job / ".hydra").mkdir(parents=True)
    resolved = {"seed": seed, **(config or {})}
    resolved["objective"] = {"name": objective, **resolved.get("objective", {})}
    (job / "config.yaml").write_text(yaml.safe_dump(resolved))
    if overrides is not None:
        lines = [f"objective={objective}", f"seed={seed}", *overrides]
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(lines))
    if golden is not None:
        metrics = {f"bon/golden@{n}": g for n, g in zip([1, 2, 4], golden)}
        metrics.update({f"bon/winrate_vs_sft@{n}": 0.5 for n in [1, 2, 4]})
        metrics.update({"eval/golden_mean": golden[-1], "eval/upbeat/demo/mean": 0.7})
        metrics.update({f"reward_scores/{g}/mean": v for g, v in (reward_scores or {}).items()})
        (job / "metrics.json").write_text(json.dumps(metrics))
    return job


def label_noise_sweep(root: Path, flip_rates=("0", "0.2"), seeds=(0, 1)) -> Path:
    """bt_pref at several noise flip rates, the way `experiment=embedded_label_noise` sweeps it; the reward
    model's weights and the Hydra sweep dir are overridden identically in every job."""
    root.mkdir(parents=True, exist_ok=True)
    num = 0
    for rate in flip_rates:
        for seed in seeds:
            shared = ["experiment=embedded_label_noise", f"{WEIGHTS}=init", f"hydra.sweep.dir={root}"]
            golden = [0.4, 0.5 - float(rate), 0.6 - float(rate) + 0.1 * seed]
            scores = {"init": -1.0, "sft": 0.0 + seed, "demo": 0.5, "bon": 2.0 + seed}
            make_job(root, num, "bt_pref", seed, golden, [*shared, f"{FLIP}={rate}"], scores)
            num += 1
    return root


@pytest.fixture
def sweep(tmp_path):
    make_job(tmp_path, 0, "irl_init_sft", 0, [0.4, 0.5, 0.6])
    make_job(tmp_path, 1, "irl_init_sft", 1, [0.4, 0.7, 0.8])
    make_job(tmp_path, 2, "bt_pref", 0, [0.4, 0.45, 0.5])
    (tmp_path / "multirun.yaml").write_text("{}")
    return tmp_path


def test_report_means_and_intervals_across_seeds(sweep):
    summary = summarise(load_jobs(sweep))
    ci = summary["irl_init_sft"]["bon/golden@4"]
    # Two seeds (0.6, 0.8): standard error 0.1, t(0.975, df=1) = 12.706.
    assert ci.mean == pytest.approx(0.7) and ci.n == 2
    assert (ci.ci_low, ci.ci_high) == (pytest.approx(-0.5706, abs=1e-4), pytest.approx(1.9706, abs=1e-4))
    assert summary["bt_pref"]["bon/golden@2"].n == 1

    path = report(sweep)
    text = path.read_text()
    assert "| irl_init_sft | 2 | 0.700 [" in text
    assert "| bt_pref | 1 | 0.500 | - | - | - |" in text  # one seed, no per-prompt CI: the value alone
    assert (sweep / "report_bon.png").stat().st_size > 1000


def test_report_puts_bon_and_trained_policies_on_one_golden_vs_kl_plot(sweep):
    job = make_job(sweep, 3, "rl_rm", 0, None)
    (job / "metrics.json").write_text(
        json.dumps(
            {
                "eval/golden_mean": 0.6,
                "eval/golden_ci_low": 0.5,
                "eval/golden_ci_high": 0.7,
                "policy/kl_to_sft/mean": 1.2,
                "policy/kl_to_sft/ci_low": 1.0,
                "policy/kl_to_sft/ci_high": 1.4,
            }
        )
    )
    for j in sweep.glob("[012]_*"):
        m = json.loads((j / "metrics.json").read_text())
        m.update({f"bon/kl_bound@{n}": k for n, k in [(1, 0.0), (2, 0.19), (4, 0.64)]})
        (j / "metrics.json").write_text(json.dumps(m))
    text = report(sweep).read_text()
    assert "| rl_rm | 1 | 0.600 [0.500, 0.700] | 1.200 [1.000, 1.400] |" in text
    assert (sweep / "report_golden_vs_kl.png").stat().st_size > 1000


def test_single_seed_keeps_its_own_interval_over_prompts(tmp_path):
    job = make_job(tmp_path, 0, "sft", 0, [0.4, 0.5, 0.6])
    metrics = json.loads((job / "metrics.json").read_text())
    metrics.update({"bon/golden@4_ci_low": 0.55, "bon/golden@4_ci_high": 0.65, "eval/golden_ci_low": 0.5})
    metrics["eval/golden_ci_high"] = 0.7
    (job / "metrics.json").write_text(json.dumps(metrics))
    per = summarise(load_jobs(tmp_path))["sft"]
    assert (per["bon/golden@4"].ci_low, per["bon/golden@4"].ci_high) == (0.55, 0.65)
    assert (per["eval/golden_mean"].ci_low, per["eval/golden_mean"].ci_high) == (0.5, 0.7)


def test_report_refuses_a_broken_job_and_names_it(sweep, capsys):
    broken = make_job(sweep, 3, "log_ratio", 0, None)
    with pytest.raises(ReportError, match=str(broken)):
        load_jobs(sweep)
    assert main([str(sweep)]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    (broken / "metrics.json").write_text("{not json")
    with pytest.raises(ReportError, match="cannot read"):
        load_jobs(sweep)


def test_report_on_a_directory_without_jobs(tmp_path):
    with pytest.raises(ReportError, match="no job directories"):
        load_jobs(tmp_path)


def test_variants_are_labelled_by_the_overrides_that_differ(tmp_path):
    sweep = label_noise_sweep(tmp_path / "noise")
    jobs = load_jobs(sweep)
    assert sorted({j.variant for j in jobs}) == [f"bt_pref {FLIP}=0", f"bt_pref {FLIP}=0.2"]
    assert jobs[-1].overrides[FLIP] == "0.2" and jobs[-1].objective == "bt_pref"
    summary = summarise(jobs)
    assert summary[f"bt_pref {FLIP}=0.2"]["bon/golden@4"].n == 2  # seeds pooled, flip rates not
    text = report(sweep).read_text()
    assert f"| bt_pref {FLIP}=0 | 2 | 0.650 [" in text
    assert f"| bt_pref {FLIP}=0.2 | 2 | 0.450 [" in text
    assert WEIGHTS not in text and "experiment=" not in text and "hydra" not in text


def test_a_job_without_overrides_yaml_is_labelled_by_its_objective(sweep):
    make_job(sweep, 3, "bt_pref", 1, [0.4, 0.45, 0.5], [f"{WEIGHTS}=sft"])
    variants = {j.path.name: j.variant for j in load_jobs(sweep)}
    assert variants["0_irl_init_sft_seed0"] == "irl_init_sft"
    assert variants["2_bt_pref_seed0"] == "bt_pref"
    assert variants["3_bt_pref_seed1"] == f"bt_pref {WEIGHTS}=sft"  # present here, absent elsewhere: differs


def test_two_sweep_directories_are_reported_together(tmp_path):
    noise = label_noise_sweep(tmp_path / "noise", flip_rates=("0.2",))
    variants = tmp_path / "variants"
    for num, (init, seed) in enumerate([("init", 0), ("sft", 0), ("sft", 1)]):
        overrides = ["experiment=embedded_rm_variants", f"{WEIGHTS}={init}"]
        make_job(variants, num, "bt_pref", seed, [0.4, 0.5, 0.55 + 0.1 * seed], overrides)
    out = tmp_path / "out"
    assert main([str(noise), str(variants), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert text.startswith(f"# afd report: {noise}, {variants}\n\n5 jobs.")
    assert f"| bt_pref {FLIP}=0.2 {WEIGHTS}=init | 2 |" in text
    assert f"| bt_pref {WEIGHTS}=init | 1 |" in text
    assert f"| bt_pref {WEIGHTS}=sft | 2 | 0.600 [" in text
    assert (out / "report_bon.png").stat().st_size > 1000
    assert not (noise / "report.md").exists() and not (variants / "report.md").exists()


def test_out_is_required_with_two_sweep_directories(tmp_path, capsys):
    a, b = label_noise_sweep(tmp_path / "a"), label_noise_sweep(tmp_path / "b", flip_rates=("0.4",))
    with pytest.raises(SystemExit) as exit_info:
        main([str(a), str(b)])
    assert exit_info.value.code == 2
    assert "--out is required" in capsys.readouterr().err
    with pytest.raises(ReportError, match="--out"):
        report([a, b])


def test_the_same_variant_and_seed_twice_is_refused(tmp_path):
    a, b = label_noise_sweep(tmp_path / "a"), label_noise_sweep(tmp_path / "b")
    with pytest.raises(ReportError, match=f"same variant \\(bt_pref {re.escape(FLIP)}=0\\) and seed \\(0\\)"):
        load_jobs(a, b)


def test_reward_score_section_and_figure_when_jobs_ran_the_diagnostic(tmp_path):
    sweep = label_noise_sweep(tmp_path / "noise")
    overrides = ["experiment=embedded_label_noise", f"{WEIGHTS}=init", f"{FLIP}=0"]
    make_job(sweep, 9, "dpo", 0, [0.5, 0.5, 0.5], overrides)
    text = report(sweep).read_text()
    section = text.split("## Reward-model scores (extrapolation diagnostic)")[1]
    assert "| variant | seeds | init | SFT | demos | BoN pick |" in section
    row = f"| bt_pref {FLIP}=0.2 | 2 | -1.000 [-1.000, -1.000] | 0.500 [-5.853, 6.853] | 0.500 ["
    assert row in section and "| 2.500 [" in section
    assert "dpo" in text and "dpo" not in section  # dpo has no proxy RM to score with
    assert (sweep / "report_reward_scores.png").stat().st_size > 1000


def test_no_reward_score_section_without_the_diagnostic(sweep):
    assert "Reward-model scores" not in report(sweep).read_text()
    assert not (sweep / "report_reward_scores.png").exists()


def test_a_broken_job_in_the_second_directory_is_named(tmp_path, capsys):
    noise = label_noise_sweep(tmp_path / "noise")
    other = tmp_path / "other"
    make_job(other, 0, "bt_pref", 0, [0.4, 0.5, 0.6], [f"{WEIGHTS}=sft"])
    broken = make_job(other, 1, "bt_pref", 1, None, [f"{WEIGHTS}=sft"])
    with pytest.raises(ReportError, match=f"unreadable jobs:\\n  {broken}: no metrics.json"):
        load_jobs(noise, other)
    assert main([str(noise), str(other), "--out", str(tmp_path / "out")]) == 2
    assert str(broken) in capsys.readouterr().err
    (broken / "metrics.json").write_text("{}")
    (broken / ".hydra" / "overrides.yaml").write_text("- [unclosed")
    with pytest.raises(ReportError, match="cannot read .hydra/overrides.yaml"):
        load_jobs(other)


def pool_size(m: int) -> dict:
    return {"objective": {"best_of_n": {"pool_size": m}}}


def test_jobs_of_one_label_with_different_configs_are_not_pooled_as_seeds(tmp_path):
    """Two sweeps whose experiment files set different pool sizes: same label, not the same variant."""
    make_job(tmp_path / "a", 0, "bt_pref", 0, [0.4, 0.5, 0.6], config=pool_size(16))
    make_job(tmp_path / "b", 0, "bt_pref", 1, [0.4, 0.5, 0.7], config=pool_size(128))
    with pytest.raises(ReportError, match=r"objective\.best_of_n\.pool_size"):
        load_jobs(tmp_path / "a", tmp_path / "b")
    # Paths, logger, experiment name and thread count may differ between seeds of one variant.
    make_job(tmp_path / "c", 0, "bt_pref", 2, [0.4, 0.5, 0.6], config={**pool_size(16), "paths": {"x": 1}})
    assert len(load_jobs(tmp_path / "a", tmp_path / "c")) == 2


def test_reference_levels_are_given_per_variant_when_they_differ(tmp_path):
    make_job(tmp_path, 0, "irl_init_sft", 0, [0.4, 0.5, 0.6], ["task=hh_harmless_gpt2"])
    job = make_job(tmp_path, 1, "irl_init_sft", 0, [0.4, 0.5, 0.6], ["task=hh_helpful_gemma2b"])
    metrics = json.loads((job / "metrics.json").read_text())
    (job / "metrics.json").write_text(json.dumps({**metrics, "eval/upbeat/demo/mean": 0.3}))
    text = report(tmp_path).read_text()
    assert "per variant" in text
    assert "- irl_init_sft task=hh_helpful_gemma2b: init -, sft -, demo 0.300" in text


def test_claims_table_pairs_by_seed_and_gives_verdicts():
    from afd.analysis.claims import claims_markdown, evaluate_claims
    from afd.analysis.jobs import Job

    def job(objective, seed, bon16, sft=0.5, demo=0.7, bon32=None):
        metrics = {
            "bon/golden@1": sft,
            "bon/golden@16": bon16,
            "eval/upbeat/sft/mean": sft,
            "eval/upbeat/demo/mean": demo,
        }
        if bon32 is not None:
            metrics["bon/golden@32"] = bon32
        return Job(Path(f"/{objective}/{seed}"), objective, seed, metrics, variant=objective)

    # Init-SFT beats BT by 0.1 +- small noise on every seed (supported); Init-Demo and Init-SFT differ in
    # sign across seeds (unresolved); SFT-Demo is above Init-SFT on every seed (contradicted).
    jobs = []
    for seed, noise in enumerate([0.0, 0.01, -0.01]):
        jobs += [
            job("irl_init_sft", seed, 0.6 + noise, bon32=0.61 + noise),
            job("bt_pref", seed, 0.5 + noise),
            job("irl_init_demo", seed, 0.6 + (0.05 if seed % 2 else -0.05)),
            job("irl_sft_demo", seed, 0.7 + noise),
        ]
    rows = {r.comparison.claim[:2]: r for r in evaluate_claims(jobs)}
    assert rows["2."].verdict == "supported" and rows["2."].n == 16, "N = the largest the compared jobs share"
    assert rows["2."].difference.mean == pytest.approx(0.1) and rows["2."].seeds == [0, 1, 2]
    assert rows["3a"].verdict == "unresolved at this size"
    assert rows["3b"].verdict == "contradicted"
    # Claim 4 compares the Init-SFT pick with the same seed's demonstrations (0.7): below them, at N = 32
    # (the Init-SFT jobs alone share it).
    assert rows["4."].verdict == "contradicted" and rows["4."].n == 32
    assert rows["4."].difference.mean == pytest.approx(-0.09)
    # Claim 1a: pi_SFT's level (from the Init-SFT jobs when no sft job ran) vs BT's BoN at N = 16.
    assert rows["1a"].difference.mean == pytest.approx(0.0, abs=1e-12)
    assert rows["1b"].verdict.startswith("not run")
    text = claims_markdown(jobs)
    assert "| 2. The Init-SFT reward model" in text and "not testable here" in text
