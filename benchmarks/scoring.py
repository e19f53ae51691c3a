"""Reward scoring: afd's ClassifierReward (batched, length-sorted, each Best-of-N pool's shared prompt
encoded once) against scoring one sequence at a time, on the same (prompt, response) pairs: in fp32 (how
golden reward models score) and, where the CPU has native bf16, in bf16 (how proxy reward models score
there)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from afd.config.run import RMTextFormat, SamplingConfig
from afd.generation.sampling import sample_responses
from afd.models.loading import load_tokenizer
from afd.rewards.classifier import ClassifierReward, encode_pairs
from benchmarks.common import (
    SMOLLM2,
    PeakRSS,
    Row,
    chitchat_test_prompts,
    load_smollm2,
    precision,
    smollm2_dir,
    timed,
)


def plain_batched(model, ids, batch_size: int, pad: int) -> np.ndarray:
    """Batched and length-sorted but every sequence encoded in full (afd's scorer before prefix sharing)."""
    scores = np.zeros(len(ids))
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for row, i in enumerate(idx):
                input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            scores[idx] = model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float().numpy()
    return scores


def one_at_a_time(model, ids) -> np.ndarray:
    with torch.inference_mode():
        return np.array([model(input_ids=torch.tensor([x])).logits[0, 0].item() for x in ids])


def run(n_prompts: int = 2, pool: int = 16, context_turns: int = 8, repeats: int = 3) -> list[Row]:
    from transformers import AutoModelForSequenceClassification

    # Real pools: SmolLM2's own samples for real prompts.
    policy, tok = load_smollm2(torch.float32)
    prompts = chitchat_test_prompts(n_prompts, context_turns)
    native_bf16 = precision().bf16
    responses = sample_responses(policy, tok, prompts, pool, SamplingConfig(), seed=0, bf16=native_bf16)
    del policy
    flat_prompts = [p for p in prompts for _ in range(pool)]
    flat_responses = [r for rs in responses for r in rs]

    source = smollm2_dir()
    tok = load_tokenizer(str(source), SMOLLM2)
    rm = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32).eval()
    rm.config.pad_token_id = tok.pad_token_id
    batch_size = 16  # the rm.batch_size and golden batch_size default
    ids = encode_pairs(tok, RMTextFormat.chat_template, flat_prompts, flat_responses, 512)
    lengths = [len(x) for x in ids]
    n = len(ids)
    setting = (
        f"{n_prompts} prompts x a pool of {pool} SmolLM2 samples each, chat template, {min(lengths)}-"
        f"{max(lengths)} tokens; SmolLM2-135M sequence classifier (num_labels=1), batch_size={batch_size}"
    )
    print(f"[scoring] {setting}", flush=True)

    rows = []
    # afd as it scores: golden RMs in fp32, proxy RMs under bf16 autocast on fp32 weights where bf16 is
    # native (else in fp32 too: emulated bf16 would only measure the emulation). The one-at-a-time baseline
    # gets its fastest plain setting: fp32 weights, or bf16 weights for bf16.
    for bf16 in (False, True) if native_bf16 else (False,):
        name = "bf16" if bf16 else "fp32"
        reward = ClassifierReward("rm", rm, tok, RMTextFormat.chat_template, 512, batch_size, bf16=bf16)
        single_model = copy.deepcopy(rm).to(torch.bfloat16) if bf16 else rm
        reward.score(flat_prompts[:2], flat_responses[:2])  # warm-up
        one_at_a_time(single_model, ids[:2])
        with PeakRSS() as afd_mem:
            afd_s, afd_scores = timed(lambda r=reward: r.score(flat_prompts, flat_responses), repeats)
        with PeakRSS() as single_mem:
            single_s, single_scores = timed(lambda m=single_model: one_at_a_time(m, ids), 1)
        agree = np.abs(afd_scores - single_scores).max()
        print(f"[scoring] {name}: afd {afd_s:.2f} s, one at a time {single_s:.2f} s", flush=True)
        rows.append(
            Row(
                f"reward scoring {name} vs one at a time",
                n / afd_s,
                n / single_s,
                "sequences/s",
                target="afd/base >= 5",
                met=single_s / afd_s >= 5,
                afd_mem=afd_mem.mib,
                baseline_mem=single_mem.mib,
                note=(
                    (
                        f"{setting}; "
                        if not bf16
                        else "afd: bf16 autocast on fp32 weights, baseline: bf16 weights; "
                    )
                    + f"max |score difference| {agree:.1e}"
                ),
            )
        )
        if not bf16:
            with PeakRSS() as plain_mem:
                plain_s, _ = timed(lambda: plain_batched(rm, ids, batch_size, tok.pad_token_id), 1)
            print(f"[scoring] fp32 plain batched {plain_s:.2f} s", flush=True)
            rows.append(
                Row(
                    "reward scoring fp32 vs plain batched",
                    n / afd_s,
                    n / plain_s,
                    "sequences/s",
                    afd_mem=afd_mem.mib,
                    baseline_mem=plain_mem.mib,
                    note="baseline: batched, length-sorted, each sequence encoded in full (no shared prefix)",
                )
            )
    return rows
