"""`afd report` on a synthetic sweep directory, including a broken job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from afd.report import ReportError, load_jobs, main, report, summarise


def make_job(root: Path, num: int, objective: str, seed: int, golden: list[float] | None) -> Path:
    job = root / f"{num}_{objective}_seed{seed}"
    (job / ".hydra").mkdir(parents=True)
    (job / "config.yaml").write_text(yaml.safe_dump({"objective": {"name": objective}, "seed": seed}))
    if golden is not None:
        metrics = {f"bon/golden@{n}": g for n, g in zip([1, 2, 4], golden)}
        metrics.update({f"bon/winrate_vs_sft@{n}": 0.5 for n in [1, 2, 4]})
        metrics.update({"eval/golden_mean": golden[-1], "eval/upbeat/demo/mean": 0.7})
        (job / "metrics.json").write_text(json.dumps(metrics))
    return job


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
    assert ci.mean == pytest.approx(0.7) and ci.n == 2 and ci.ci_low < 0.6 and ci.ci_high > 0.8
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
