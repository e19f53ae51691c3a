"""The stage cache: hits, misses on a changed knob, and no trusted entry after a killed write."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

import pytest

from afd.runtime.cache import StageCache, stage_key


@dataclass
class Knobs:
    lr: float
    steps: int


def test_hit_reuses_and_changed_knob_misses(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def build(out):
        calls.append(out)
        (out / "weights.txt").write_text("w")

    a = cache.get_or_build("sft", {"knobs": Knobs(1e-4, 10)}, build)
    b = cache.get_or_build("sft", {"knobs": Knobs(1e-4, 10)}, build)
    c = cache.get_or_build("sft", {"knobs": Knobs(1e-4, 11)}, build)
    assert a == b != c
    assert len(calls) == 2
    assert (a / "weights.txt").read_text() == "w" and (a / "spec.json").exists()


def test_key_depends_on_stage_and_every_field():
    base = {"knobs": Knobs(1e-4, 10), "seed": 0}
    assert stage_key("sft", base) == stage_key("sft", {"seed": 0, "knobs": Knobs(1e-4, 10)})
    assert stage_key("sft", base) != stage_key("sample", base)
    assert stage_key("sft", base) != stage_key("sft", {**base, "seed": 1})


def test_failed_build_leaves_nothing(tmp_path):
    cache = StageCache(tmp_path)

    def build(out):
        (out / "half.bin").write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.get_or_build("sft", {"x": 1}, build)
    assert not cache.entry("sft", {"x": 1}).exists()
    assert list((tmp_path / "sft").iterdir()) == []


def test_killed_write_is_not_trusted_and_rerun_completes(tmp_path):
    # A real kill: the process dies mid-build with no chance to clean up.
    script = textwrap.dedent(
        f"""
        import os
        from afd.runtime.cache import StageCache
        def build(out):
            (out / "half.bin").write_text("partial")
            os._exit(9)
        StageCache({str(tmp_path)!r}).get_or_build("sft", {{"x": 1}}, build)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == 9
    cache = StageCache(tmp_path)
    assert not cache.entry("sft", {"x": 1}).exists(), "a half-written entry must not be visible"
    leftovers = list((tmp_path / "sft").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".")

    built = []
    entry = cache.get_or_build(
        "sft", {"x": 1}, lambda out: (built.append(1), (out / "full.bin").write_text("ok"))
    )
    assert built == [1] and (entry / "full.bin").read_text() == "ok" and not (entry / "half.bin").exists()


def test_a_resumable_build_continues_from_what_a_killed_run_left(tmp_path):
    script = textwrap.dedent(
        f"""
        import os
        from afd.runtime.cache import StageCache
        def build(out):
            (out / "step1.bin").write_text("done")
            os._exit(9)
        StageCache({str(tmp_path)!r}).get_or_build("sft", {{"x": 1}}, build, resumable=True)
        """
    )
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    cache = StageCache(tmp_path)
    assert not cache.entry("sft", {"x": 1}).exists()
    seen = []

    def build(out):
        seen.extend(sorted(p.name for p in out.iterdir()))
        (out / "step2.bin").write_text("done")

    entry = cache.get_or_build("sft", {"x": 1}, build, resumable=True)
    assert seen == ["step1.bin"], "the resumed build sees the killed run's finished work"
    assert sorted(p.name for p in entry.iterdir()) == ["spec.json", "step1.bin", "step2.bin"]
    assert [p.name for p in (tmp_path / "sft").iterdir()] == [entry.name]


def test_key_includes_library_versions_and_stage_code(monkeypatch):
    import afd.runtime.cache as cache_module

    spec = {"x": 1}
    before = stage_key("sft", spec)
    env = cache_module.environment()
    monkeypatch.setattr(
        cache_module, "environment", lambda: {**env, "libraries": {**env["libraries"], "trl": "9.9.9"}}
    )
    assert stage_key("sft", spec) != before, "another trl version is another result"
    monkeypatch.setattr(cache_module, "environment", lambda: {**env, "afd_code": "edited"})
    assert stage_key("sft", spec) != before, "edited stage code is another result"


def test_file_digests_are_remembered_by_path_size_and_mtime(tmp_path, monkeypatch):
    import afd.runtime.fingerprint as fp

    calls = []
    real = fp.sha256_file
    monkeypatch.setattr(fp, "sha256_file", lambda p: calls.append(p) or real(p))
    weights = tmp_path / "model" / "weights.bin"
    weights.parent.mkdir()
    weights.write_bytes(b"a" * 100)
    first = fp.FileDigests(tmp_path / "cache")
    d1 = first.directory(weights.parent)
    first.save()
    # A new process (a new FileDigests) reads the memo: no re-hash of an unchanged file.
    assert fp.FileDigests(tmp_path / "cache").directory(weights.parent) == d1 and len(calls) == 1
    weights.write_bytes(b"b" * 100)  # same path, same size, new content and mtime
    d2 = fp.FileDigests(tmp_path / "cache").directory(weights.parent)
    assert d2 != d1 and len(calls) == 2


def test_overwriting_a_model_at_the_same_path_is_a_cache_miss(make_context, tiny_model_dir, tmp_path, caplog):
    """The stale-entry defect: the base policy's key followed its config, not its weights."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from afd.models.policies import init_policy
    from afd.stages.sample import sample_split

    from conftest import tiny_overrides

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    ctx = make_context(tiny_overrides(model_dir, tmp_path / "cache"))
    from datasets import Dataset

    split = Dataset.from_dict(
        {"prompt_id": ["a", "b"], "prompt": [[{"role": "user", "content": "hello there"}]] * 2}
    )
    first = sample_split(ctx, init_policy(ctx), "test", split, 2)
    # Another model written over the same files (what re-running a training script into one folder does).
    weights = load_file(str(model_dir / "model.safetensors"))
    torch.manual_seed(5)
    save_file({k: torch.randn_like(v) for k, v in weights.items()}, str(model_dir / "model.safetensors"))
    with caplog.at_level(logging.INFO, logger="afd.runtime.cache"):
        second = sample_split(ctx, init_policy(ctx), "test", split, 2)
    assert "cache miss: sample" in caplog.text and "cache hit" not in caplog.text
    assert second != first
    assert len([p for p in (tmp_path / "cache" / "sample").iterdir() if not p.name.startswith(".")]) == 2


_LOCKED_BUILD = """
import logging, sys, time
from pathlib import Path
from afd.runtime.cache import StageCache
logging.basicConfig(level=logging.INFO, format="%(message)s")
def build(out):
    with open({log!r}, "a") as f:
        f.write("built\\n")
    time.sleep(float(sys.argv[1]))
    (out / "done").write_text("ok")
print(StageCache({root!r}).get_or_build("sft", {{"x": 1}}, build))
"""


def test_two_runs_on_one_key_build_once_and_the_second_waits(tmp_path):
    script = _LOCKED_BUILD.format(log=str(tmp_path / "builds.log"), root=str(tmp_path / "cache"))
    first = subprocess.Popen(
        [sys.executable, "-c", script, "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(1.0)
    second = subprocess.run([sys.executable, "-c", script, "0"], capture_output=True, text=True, timeout=60)
    out1, err1 = first.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, err1 + second.stderr
    assert (tmp_path / "builds.log").read_text() == "built\n", "one build for one key"
    assert out1 == second.stdout, "both runs get the same entry"
    assert "waiting for another run that is building sft" in second.stderr
    assert "waited" in second.stderr and "cache hit" in second.stderr


def test_a_killed_builder_releases_its_lock(tmp_path):
    script = _LOCKED_BUILD.format(log=str(tmp_path / "builds.log"), root=str(tmp_path / "cache"))
    holder = subprocess.Popen([sys.executable, "-c", script, "600"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not (tmp_path / "builds.log").exists() and time.time() < deadline:
        time.sleep(0.1)
    holder.kill()  # SIGKILL: no chance to unlock or clean up
    holder.wait()
    start = time.time()
    done = subprocess.run([sys.executable, "-c", script, "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.time() - start < 30
    assert (tmp_path / "builds.log").read_text() == "built\nbuilt\n"
    assert "waiting" not in done.stderr


def test_a_killed_pool_resumes_at_its_first_unfinished_part(
    make_context, tiny_model_dir, tmp_path, monkeypatch
):
    """Ctrl-C in the third part of a pool: the re-run samples only the parts not written, and the pool
    equals an uninterrupted run's (parts are a fixed cut, each prompt has its own random streams)."""
    from datasets import Dataset

    import afd.stages.sample as sample_stage
    from afd.models.policies import init_policy

    from conftest import tiny_overrides

    monkeypatch.setattr(sample_stage, "SAMPLES_PER_PART", 4)  # 2 prompts per part at n=2
    split = Dataset.from_dict(
        {
            "prompt_id": [f"p{i}" for i in range(7)],
            "prompt": [[{"role": "user", "content": f"tell me about {w}"}] for w in "abcdefg"],
        }
    )
    sampled: list[int] = []
    real = sample_stage.sample_responses

    def counting(model, tokenizer, prompts, n, *args, **kwargs):
        if len(sampled) == 2:
            raise KeyboardInterrupt  # what Ctrl-C or a lost node does mid-part: no cleanup
        sampled.append(len(prompts))
        return real(model, tokenizer, prompts, n, *args, **kwargs)

    monkeypatch.setattr(sample_stage, "sample_responses", counting)
    ctx = make_context(tiny_overrides(tiny_model_dir, tmp_path / "cache"))
    with pytest.raises(KeyboardInterrupt):
        sample_stage.sample_split(ctx, init_policy(ctx), "test", split, 2)
    assert sampled == [2, 2]
    monkeypatch.setattr(sample_stage, "sample_responses", real)
    resumed_calls: list[int] = []

    def resumed_counting(model, tokenizer, prompts, n, *args, **kwargs):
        resumed_calls.append(len(prompts))
        return real(model, tokenizer, prompts, n, *args, **kwargs)

    monkeypatch.setattr(sample_stage, "sample_responses", resumed_counting)
    resumed = sample_stage.sample_split(ctx, init_policy(ctx), "test", split, 2)
    assert resumed_calls == [2, 1], "only the unfinished parts are sampled again"
    entry = next(p for p in (tmp_path / "cache" / "sample").iterdir() if not p.name.startswith("."))
    assert not (entry / sample_stage.PARTS_DIR).exists()

    fresh_ctx = make_context(tiny_overrides(tiny_model_dir, tmp_path / "fresh_cache"))
    assert resumed == sample_stage.sample_split(fresh_ctx, init_policy(fresh_ctx), "test", split, 2)
