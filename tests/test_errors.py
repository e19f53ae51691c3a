"""Errors at the door: a bad config, path or row is one line naming it, exit status 2, and nothing
created; Ctrl-C is one line and status 130; shortened work is a WARNING with counts."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from afd.config import ConfigError, to_run_config, validate
from afd.main import CONF_DIR
from afd.runtime.errors import UserError
from afd.runtime.preflight import expand_sweep, preflight

from conftest import tiny_overrides

AFD = str(Path(sys.executable).with_name("afd"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "AFD_DEBUG": ""}


def afd(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([AFD, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def test_a_missing_dataset_path_is_one_line_exit_2_and_creates_nothing(tmp_path):
    proc = afd(["dataset=jsonl", "dataset.path=/nope", f"paths.cache_dir={tmp_path / 'cache'}"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "afd: dataset.path=/nope: file not found\n" and proc.stdout == ""
    assert list(tmp_path.iterdir()) == [], "no outputs/, no wandb/, no cache entry"


def test_a_bad_job_in_a_sweep_stops_it_before_the_first_job(tmp_path, tiny_model_dir):
    proc = afd(
        [
            "-m",
            "objective=sft",
            "objective.sft.trainer.learning_rate=1e-4,-1",
            *tiny_overrides(tiny_model_dir, tmp_path / "c"),
        ],
        tmp_path,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.count("\n") == 1
        and "objective.sft.trainer.learning_rate=-1.0: expected > 0" in proc.stderr
    )
    assert list(tmp_path.iterdir()) == [], "no multirun/ directory, no job ran"


def test_a_bad_row_found_inside_the_job_is_one_line_naming_file_and_line(tmp_path, tiny_model_dir):
    data = tmp_path / "demos.jsonl"
    rows = [json.dumps({"prompt": f"hello there {i}", "demonstration": "i love it"}) for i in range(3)]
    data.write_text("\n".join([*rows[:2], '{"prompt": "hi"}', rows[2]]) + "\n")
    proc = afd(
        ["dataset=jsonl", f"dataset.path={data}", *tiny_overrides(tiny_model_dir, tmp_path / "c")], tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f'afd: {data}, line 3: field "demonstration" is missing'
    assert "Traceback" not in proc.stderr


def test_ctrl_c_is_one_line_and_status_130(tmp_path, tiny_model_dir):
    proc = subprocess.Popen(
        [
            AFD,
            "objective=sft",
            "objective.sft.trainer.max_steps=200",
            *tiny_overrides(tiny_model_dir, tmp_path / "c")[:-2],
            f"paths.cache_dir={tmp_path / 'c'}",
            "dataset.train_size=64",
            "objective.sft.trainer.per_device_train_batch_size=2",
        ],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A child of a non-interactive shell may inherit SIGINT ignored; the user's terminal does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    training = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "/200 [" in line:  # the SFT progress bar: training has started
                training.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert training.wait(120), "".join(lines)
    time.sleep(1.0)
    mark = len(lines)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    # What came after Ctrl-C, less the progress bar's own redraws (tqdm ends them with \r, not \n; a
    # loaded machine shows s/it instead of it/s).
    fragments = re.split(r"[\r\n]", re.sub(r"[^\r\n]*(it/s|s/it)\]", "", "".join(lines[mark:])))
    after = [x for x in fragments if x.strip()]
    assert proc.returncode == 130
    assert after == ["afd: interrupted; finished stages stay in the cache, so a re-run continues from them"]


@pytest.mark.parametrize(
    "override,key",
    [
        ("objective.sft.trainer.learning_rate=0", "objective.sft.trainer.learning_rate"),
        ("objective.reward.trainer.learning_rate=-1e-5", "objective.reward.trainer.learning_rate"),
        ("objective=dpo_demo objective.dpo.trainer.learning_rate=0", "objective.dpo.trainer.learning_rate"),
        ("objective=rl_rm objective.rl.trainer.learning_rate=-1", "objective.rl.trainer.learning_rate"),
        ("objective.sft.trainer.num_train_epochs=0", "objective.sft.trainer.num_train_epochs"),
        ("objective.reward.trainer.max_steps=0", "objective.reward.trainer.max_steps"),
        (
            "objective.sft.trainer.per_device_train_batch_size=0",
            "objective.sft.trainer.per_device_train_batch_size",
        ),
        ("sampling.batch_size=0", "sampling.batch_size"),
        ("sampling.max_prompt_tokens=0", "sampling.max_prompt_tokens"),
        ("objective.reward.heldout_fraction=1", "objective.reward.heldout_fraction"),
        (
            "objective=bt_pref objective.reward.pairs.noise.human_flip_rate=1.5",
            "objective.reward.pairs.noise.human_flip_rate",
        ),
        ("objective=rl_rm objective.rl.beta=-0.1", "objective.rl.beta"),
        ("model.max_length=1", "model.max_length"),
        ("+model.lora.r=0", "model.lora.r"),
        ("dataset.align_size=0", "dataset.align_size"),
        ("objective=dpo_demo objective.stability.max_kl=0", "objective.stability.max_kl"),
    ],
)
def test_every_number_is_range_checked(compose, override, key):
    extra = ["model.lora.enabled=true"] if "lora" in key else []
    cfg = to_run_config(compose([*override.lstrip("+").split(), *extra, "paths.output_dir=/tmp/x"]))
    with pytest.raises(ConfigError, match=re.escape(key)):
        validate(cfg)


def test_preflight_checks_paths_of_every_job(tmp_path):
    with pytest.raises(UserError, match="dataset.demonstrations_path=/missing.jsonl: file not found"):
        preflight(["dataset.demonstrations_path=/missing.jsonl"], CONF_DIR)
    with pytest.raises(UserError, match=r"model.name_or_path=/no/model looks like a local path"):
        preflight(["-m", "seed=0,1", "model=custom", "model.name_or_path=/no/model"], CONF_DIR)
    assert preflight(["-m", "experiment=embedded_rm_variants"], CONF_DIR) == 10
    assert preflight(["--cfg", "job"], CONF_DIR) == 0, "no job runs: nothing to check"


def test_expand_sweep_is_the_basic_sweepers_product():
    jobs = expand_sweep(["seed=0,1", "objective=sft", "dataset.test_size=8,9", "seed=3,4,5"])
    assert jobs[0] == ["seed=3", "objective=sft", "dataset.test_size=8"]
    assert len(jobs) == 6, "a later override of a key replaces the earlier one"


def test_shortened_work_is_a_warning_with_counts(make_context, tiny_model_dir, tmp_path, caplog):
    from datasets import Dataset

    from afd.data import load_splits
    from afd.models.policies import init_policy
    from afd.stages.sample import sample_split
    from afd.stages.sft import train_sft

    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {"prompt": f"hello there how are you doing today {i}", "demonstration": "i love it " * 30}
            )
            + "\n"
            for i in range(6)
        )
    )
    ctx = make_context(
        [
            *tiny_overrides(tiny_model_dir, tmp_path / "cache"),
            "dataset=jsonl",
            f"dataset.path={data}",
            "dataset.test_size=2",
            "dataset.align_size=1",
            "dataset.train_size=10",
            "sampling.max_prompt_tokens=4",
            "model.max_length=40",
        ]
    )
    with caplog.at_level(logging.WARNING):
        splits = load_splits(ctx.cfg.dataset)
        sample_split(ctx, init_policy(ctx), "test", splits["test"], 1)
        train_sft(ctx, init_policy(ctx), splits["train"], ctx.cfg.objective.sft)
    text = caplog.text
    assert "the train split has 3 examples, fewer than dataset.train_size=10" in text
    assert "2 of 2 prompts are longer than sampling.max_prompt_tokens=4" in text
    assert "sft: demonstrations: 3 of 3 exceed model.max_length=40" in text
    _ = Dataset


def test_report_keeps_proportion_intervals_inside_0_1():
    from afd.analysis.jobs import Job
    from afd.analysis.summary import summarise

    jobs = [
        Job(Path(f"/j{s}"), "x", s, {"reward/accuracy": a, "eval/golden_mean": g})
        for s, a, g in [(0, 0.99, 0.5), (1, 1.0, 0.9)]
    ]
    summary = summarise(jobs)["x"]
    assert summary["reward/accuracy"].ci_high == 1.0 and summary["reward/accuracy"].ci_low >= 0.0
    assert summary["eval/golden_mean"].ci_high > 1.0, "an unbounded metric keeps its t-interval"
