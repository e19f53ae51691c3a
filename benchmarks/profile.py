"""Where the time goes: torch.profiler over one SFT training step (forward, backward, AdamW) of SmolLM2 on
8 chitchat demonstrations, over a Best-of-N decode (afd's sampler, N=16, 2 prompts), and over reward
scoring of one such pool (afd's ClassifierReward: the prompt once, its 16 responses from its KV cache),
in the run's precision. Prints each profile's top operators by self CPU time: `python -m benchmarks.profile`.
The closing notes of the performance work quote it where a target is missed."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import chitchat_test_prompts, load_smollm2, precision

ROWS = 12


def _top(prof, title: str) -> None:
    print(f"\n== {title}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=ROWS, max_name_column_width=40))


def sft_step(model, tok, bf16: bool) -> None:
    from afd.config.run import DatasetConfig, DatasetSource
    from afd.data import load_splits

    dataset = DatasetConfig(name="chitchat_upbeat", source=DatasetSource.chitchat_upbeat)
    rows = load_splits(dataset)["train"].select(range(8))
    texts = [
        tok.apply_chat_template([*p, {"role": "assistant", "content": d}], tokenize=False)
        for p, d in zip(rows["prompt"], rows["demonstration"])
    ]
    batch = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=512)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()

    step()  # warm-up: optimizer state, allocator
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    shape, real = batch["input_ids"].shape, int(batch["attention_mask"].sum())
    _top(prof, f"one SFT step, batch {shape[0]} x {shape[1]} tokens ({real} real)")


def decode(model, tok, bf16: bool) -> None:
    from afd.config.run import SamplingConfig
    from afd.generation.prompts import encode_prompts
    from afd.generation.sampling import sample_token_ids

    cfg = SamplingConfig()
    ids = encode_prompts(tok, chitchat_test_prompts(2, 8), cfg.max_prompt_tokens)
    model.eval()
    sample_token_ids(
        model, ids[:1], 2, SamplingConfig(max_new_tokens=4), 0, tok.eos_token_id, tok.pad_token_id
    )
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        sample_token_ids(model, ids, 16, cfg, 0, tok.eos_token_id, tok.pad_token_id, bf16=bf16)
    _top(prof, f"Best-of-N decode, 2 prompts x N=16, {cfg.max_new_tokens} new tokens")


def scoring(tok, bf16: bool) -> None:
    from transformers import AutoModelForSequenceClassification

    from afd.config.run import RMTextFormat
    from afd.rewards.classifier import ClassifierReward
    from benchmarks.common import smollm2_dir

    rm = AutoModelForSequenceClassification.from_pretrained(smollm2_dir(), num_labels=1, dtype=torch.float32)
    rm.config.pad_token_id = tok.pad_token_id
    reward = ClassifierReward("rm", rm, tok, RMTextFormat.chat_template, 512, 16, bf16=bf16)
    prompts = chitchat_test_prompts(1, 8) * 16
    # Replies of chitchat length (20-40 tokens), different per row as a pool's are.
    responses = [" ".join(["that sounds like a lot of fun"] * (3 + i % 3)) + f" {i}" for i in range(16)]
    reward.score(prompts[:2], responses[:2])  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        reward.score(prompts, responses)
    _top(prof, "reward scoring, 1 prompt x a pool of 16 responses, batch_size 16")


def main() -> None:
    bf16 = precision().bf16
    model, tok = load_smollm2(torch.float32)
    print(f"precision: fp32 weights{' + bf16 autocast' if bf16 else ''}, {torch.get_num_threads()} threads")
    sft_step(model, tok, bf16)
    decode(model, tok, bf16)
    del model
    scoring(tok, bf16)


if __name__ == "__main__":
    main()
