"""The sample stage: n responses of a policy to each prompt of a split, cached as JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
from transformers import set_seed

from afd.generation.sampling import sample_responses
from afd.models.policies import PolicyHandle
from afd.runtime.context import RunContext

SAMPLES_FILE = "samples.jsonl"


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
        model, tokenizer = policy.get()
        set_seed(cfg.seed)
        responses = sample_responses(
            model,
            tokenizer,
            list(split["prompt"]),
            n,
            cfg.sampling,
            cfg.seed,
            desc=f"sample {policy.name} on {split_name} (n={n})",
            bf16=ctx.bf16,
        )
        with (out / SAMPLES_FILE).open("w") as f:
            for pid, rs in zip(prompt_ids, responses):
                f.write(json.dumps({"prompt_id": pid, "responses": rs}) + "\n")

    entry = ctx.cache.get_or_build("sample", spec, build)
    rows = [json.loads(line) for line in (entry / SAMPLES_FILE).read_text().splitlines()]
    return [row["responses"] for row in rows]
