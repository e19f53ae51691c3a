"""The per-stage memory record: a stage's own peak, even after an earlier stage set the process's."""

import time

import pytest
import torch
from test_reward_models import separable_pairs

import afd.stages.reward_model as reward_model
import afd.stages.sample as sample_stage
from afd.data import load_splits
from afd.data.pairs import split_heldout
from afd.models.policies import init_policy
from afd.runtime.memory import StagePeak, peak_rss_gb, release_freed_memory, rss_gb
from afd.stages.sft import train_sft

from conftest import tiny_overrides


def test_a_stage_peak_sees_memory_freed_before_the_stage_ends():
    # An earlier, larger peak (the process high-water mark cannot show the stage's own one).
    big = torch.ones(96 * 2**20)  # 384 MB
    del big
    with StagePeak() as stage:
        held = torch.ones(48 * 2**20)  # 192 MB, held longer than one sampling interval, then freed
        time.sleep(0.3)
        del held
    assert stage.peak_gb - stage.start_gb > 0.15
    assert stage.peak_gb <= peak_rss_gb() + 0.01
    # Freed at the end: what is resident now is well below the sampled peak (torch returns large blocks).
    assert rss_gb() < stage.peak_gb - 0.1


def test_freed_memory_in_heap_holes_goes_back_to_the_os():
    """What a stage frees between blocks it keeps (heap holes glibc cannot trim from the top) stays
    resident until release_freed_memory: catches a release that only collects garbage."""
    # 300 MB of heap chunks, below the mmap threshold also after compute.low_memory set it (a run's
    # entrypoint earlier in this test process may have)
    blocks = [bytearray(60_000) for _ in range(5000)]
    for b in blocks:
        b[::4096] = b"\x01" * len(b[::4096])  # touch every page
    kept = blocks[::20]  # every 20th stays, down to the last one: the heap's top cannot shrink
    del blocks
    held = rss_gb()
    release_freed_memory()
    assert held - rss_gb() > 0.2
    assert len(kept) == 250


HOLES = """
import sys, torch
from afd.runtime.memory import map_large_allocations, rss_gb
if sys.argv[1] == "low_memory":
    assert map_large_allocations()
big = torch.ones(4 * 2**20)  # 16 MB, mapped and freed: glibc then serves smaller tensors from its heap
del big
blocks = [torch.ones(2**18) for _ in range(1000)]  # 1 GB of 1 MB tensors
kept = blocks[::10]  # every 10th stays, down to the last: the heap's top cannot shrink
del blocks
print(rss_gb())
"""


def test_low_memory_hands_freed_tensors_back_to_the_os_at_once():
    """compute.low_memory: tensors freed between ones still held go back to the OS with no trim. The
    control run shows why it is needed (and that the check can fail): by default they stay resident."""
    import subprocess
    import sys

    def resident(mode: str) -> float:  # a process of its own: the setting is process-wide
        out = subprocess.run([sys.executable, "-c", HOLES, mode], capture_output=True, text=True, check=True)
        return float(out.stdout.split()[-1])

    default, low = resident("default"), resident("low_memory")
    assert default - low > 0.6, (default, low)


def test_training_stages_drop_loaded_policies_and_load_them_again(
    make_context, tiny_model_dir, tmp_path, monkeypatch
):
    """SFT and the reward model train with no policy of the run loaded (each holds its weights through the
    stage's peak); a later stage's get() loads the same weights again. Catches a stage that keeps them, and
    a release that loses the policy."""
    overrides = [*tiny_overrides(tiny_model_dir, tmp_path / "cache"), "objective.reward.trainer.max_steps=2"]
    ctx = make_context([*overrides, "objective.sft.trainer.max_steps=2"])
    init = init_policy(ctx)
    before = {k: v.clone() for k, v in init.get()[0].state_dict().items()}
    loaded = []
    real_reward_trainer = reward_model._trainer

    def spy(*args, **kwargs):
        loaded.append([h.name for h in ctx.policies if h._loaded is not None])
        return real_reward_trainer(*args, **kwargs)

    sft = train_sft(ctx, init, load_splits(ctx.cfg.dataset)["train"], ctx.cfg.objective.sft)
    assert init._loaded is None, "SFT dropped pi_init while it trained"
    sft.get()
    monkeypatch.setattr(reward_model, "_trainer", spy)
    train = split_heldout(separable_pairs(), 0.25, seed=0)[0]
    cfg = make_context(overrides).cfg.objective.reward
    reward_model.train_reward_model(ctx, str(tiny_model_dir), {"model": "tiny"}, train, cfg)
    assert loaded == [[]], "no policy loaded while the reward model trains"
    after = init.get()[0].state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


@pytest.mark.parametrize("low_memory", [True, False])
def test_a_sampling_stage_under_low_memory_samples_with_no_other_policy_loaded(
    make_context, tiny_model_dir, tmp_path, monkeypatch, low_memory
):
    """make run samples pi_init and then pi_SFT on the align prompts: under compute.low_memory the second
    stage must not hold the first's policy through its peak; without it the run keeps policies loaded for
    the next stage that needs them. Catches a release that drops the stage's own policy too."""
    ctx = make_context(
        [*tiny_overrides(tiny_model_dir, tmp_path / "cache"), f"compute.low_memory={str(low_memory).lower()}"]
    )
    earlier, sampled = init_policy(ctx), init_policy(ctx)
    earlier.get()
    loaded = []
    real_sample_responses = sample_stage.sample_responses

    def spy(model, *args, **kwargs):
        own = sampled._loaded is not None and sampled._loaded[0] is model
        loaded.append((earlier._loaded is not None, own))
        return real_sample_responses(model, *args, **kwargs)

    monkeypatch.setattr(sample_stage, "sample_responses", spy)
    split = load_splits(ctx.cfg.dataset)["test"].select(range(2))
    sample_stage.sample_split(ctx, sampled, "test", split, 2)
    assert loaded == [(not low_memory, True)]
