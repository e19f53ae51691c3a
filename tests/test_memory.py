"""The per-stage memory record: a stage's own peak, even after an earlier stage set the process's."""

import time

import torch

from afd.runtime.memory import StagePeak, peak_rss_gb, rss_gb


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
