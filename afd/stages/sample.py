"""The sample stage: n responses of a policy to each prompt of a split, cached as JSON lines.

Prompts are sampled in parts of about SAMPLES_PER_PART sequences; each finished part is written to the
entry's partial directory, so a run killed mid-pool resumes at the first unfinished part. Under
accelerate the ranks share each part (afd/runtime/distributed.py). The parts are a fixed cut of the
split, and a prompt's samples come from its own random streams, so neither resuming nor the number of
processes changes a pool.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import datasets
from transformers import set_seed

from afd.generation.sampling import sample_responses
from afd.models.policies import PolicyHandle, release_policies
from afd.runtime.context import RunContext
from afd.runtime.distributed import is_main_process, main_process_value, sharded, wait_for_everyone

log = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"
PARTS_DIR = "parts"
SAMPLES_PER_PART = 512
"""Sequences per part: a few minutes of CPU decoding, the most a killed run loses."""


def parts(n_prompts: int, n: int) -> list[range]:
    """The split's prompts cut into consecutive parts of about SAMPLES_PER_PART samples."""
    size = max(1, SAMPLES_PER_PART // n)
    return [range(s, min(s + size, n_prompts)) for s in range(0, n_prompts, size)]


def _write_part(path: Path, rows: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(rows))
    os.replace(tmp, path)  # a part exists only complete


def sample_split(
    ctx: RunContext, policy: PolicyHandle, split_name: str, split: datasets.Dataset, n: int
) -> list[list[str]]:
    """Responses in split order: `result[i]` holds the n samples for `split[i]`."""
    cfg = ctx.cfg
    prompt_ids = list(split["prompt_id"])
    spec = {
        "policy": policy.spec,
        "split": split_name,
        "prompt_ids": prompt_ids,
        "n": n,
        "sampling": cfg.sampling,
        "seed": cfg.seed,
        "bf16": ctx.bf16,
        "device": ctx.device.type,
        "dtype": str(ctx.dtype),
    }

    def build(out: Path) -> None:
        part_dir = out / PARTS_DIR
        if is_main_process():
            part_dir.mkdir(exist_ok=True)
        wait_for_everyone()
        prompts = list(split["prompt"])
        cut = parts(len(prompts), n)
        if cfg.compute.low_memory:
            # The policy an earlier stage sampled stays loaded for the next that needs it; here it would
            # only add its weights to this stage's peak (make run's pi_SFT align samples: 0.54 GB more).
            release_policies(ctx, keep=policy)
        finished = 0
        for k, part in enumerate(cut):
            path = part_dir / f"{k:05d}.jsonl"
            if main_process_value(path.is_file()):
                finished += 1
                continue
            model, tokenizer = policy.get()
            set_seed(cfg.seed)
            with sharded():
                responses = sample_responses(
                    model,
                    tokenizer,
                    [prompts[i] for i in part],
                    n,
                    cfg.sampling,
                    cfg.seed,
                    desc=f"sample {policy.name} on {split_name} (n={n}, part {k + 1}/{len(cut)})",
                    bf16=ctx.bf16,
                )
            if is_main_process():
                rows = [
                    json.dumps({"prompt_id": prompt_ids[i], "responses": rs}) + "\n"
                    for i, rs in zip(part, responses)
                ]
                _write_part(path, rows)
            wait_for_everyone()
        if finished:
            log.info(
                "sample %s on %s: resumed with %d/%d parts done", policy.name, split_name, finished, len(cut)
            )
        if is_main_process():
            with (out / SAMPLES_FILE).open("w") as f:
                for k in range(len(cut)):
                    f.write((part_dir / f"{k:05d}.jsonl").read_text())
            for k in range(len(cut)):
                (part_dir / f"{k:05d}.jsonl").unlink()
            part_dir.rmdir()

    entry = ctx.cache.get_or_build("sample", spec, build, resumable=True)
    rows = [json.loads(line) for line in (entry / SAMPLES_FILE).read_text().splitlines()]
    return [row["responses"] for row in rows]
