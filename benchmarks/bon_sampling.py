"""Best-of-N sampling: afd's shared-prefix sampler against `generate(num_return_sequences=N)` on the same
prompts, and the decoding FLOP/s each reaches as a share of the matmul peak, in the dtype the run uses,
measured in the same run."""

from __future__ import annotations

import torch

from afd.config.run import SamplingConfig
from afd.generation.kv_cache import left_padded
from afd.generation.prompts import encode_prompts
from afd.generation.sampling import cut_at_eos, sample_token_ids
from benchmarks.common import (
    PeakRSS,
    Row,
    chitchat_test_prompts,
    load_smollm2,
    matmul_peak_flops,
    peak_share_row,
    precision,
    timed,
)

# The baseline's memory budget: 8 prompts x 16 sequences, as at N=16.
MAX_BASELINE_ROWS = 128
TARGETS = {16: 4.5, 64: 3.0}  # afd/base tokens/s by N
PEAK_GOAL = 25  # % of the matmul peak afd's decoding should reach


def response_tokens(rows, eos: int) -> int:
    """Generated tokens up to and including the first EOS (what a response costs)."""
    return sum(len(cut_at_eos(list(row), eos)) for row in rows)


def generate_baseline(model, prompt_ids, n: int, cfg: SamplingConfig, pad: int, eos: int, seed: int) -> int:
    """Plain transformers: `generate(num_return_sequences=n)` on left-padded prompts (each prompt encoded n
    times), as many prompts per call as fit in MAX_BASELINE_ROWS sequences; returns the tokens generated.
    (One call with all 8 prompts x 64 sequences took 294 s on the benchmark machine: slower still.)"""
    per_call = max(1, MAX_BASELINE_ROWS // n)
    return sum(
        _generate(model, prompt_ids[s : s + per_call], n, cfg, pad, eos, seed + s)
        for s in range(0, len(prompt_ids), per_call)
    )


def _generate(model, prompt_ids, n: int, cfg: SamplingConfig, pad: int, eos: int, seed: int) -> int:
    input_ids, mask = left_padded(prompt_ids, pad)
    width = input_ids.shape[1]
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            do_sample=True,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=0,
            max_new_tokens=cfg.max_new_tokens,
            num_return_sequences=n,
            pad_token_id=pad,
            eos_token_id=eos,
        )
    return response_tokens(out[:, width:].tolist(), eos)


def run(
    n_values=(16, 64),
    n_prompts: int = 8,
    context_turns: int = 8,
    afd_repeats: int = 3,
    new_tokens: int | None = None,
) -> list[Row]:
    # afd's defaults: T=1, top_p=0.95, 48 new tokens (unless `new_tokens`), batch_size 64.
    cfg = SamplingConfig(**({"max_new_tokens": new_tokens} if new_tokens else {}))
    # afd as it runs on this CPU: fp32 weights, under bf16 autocast where bf16 is native. The baseline
    # gets its fastest plain setting in the same precision: bf16 weights there (what shared/offline.md
    # measured ~210 tokens/s with), else the same fp32 model.
    prec = precision()
    model, tok = load_smollm2(torch.float32)
    base_model = load_smollm2(torch.bfloat16)[0] if prec.bf16 else model
    params = sum(p.numel() for p in model.parameters())
    eos, pad = tok.eos_token_id, tok.pad_token_id
    prompt_ids = encode_prompts(tok, chitchat_test_prompts(n_prompts, context_turns), cfg.max_prompt_tokens)
    lengths = [len(p) for p in prompt_ids]
    setting = (
        f"{n_prompts} chitchat test prompts ({min(lengths)}-{max(lengths)} tokens, mean "
        f"{sum(lengths) / len(lengths):.0f}), {cfg.max_new_tokens} new tokens, T={cfg.temperature}, "
        f"top_p={cfg.top_p}; afd: fp32 weights{' + bf16 autocast' if prec.bf16 else ''}, "
        f"batch_size={cfg.batch_size}; baseline: {prec.name} weights"
    )
    print(f"[sampling] {setting}", flush=True)

    def afd(n: int, seed: int = 0) -> int:
        out = sample_token_ids(model, prompt_ids, n, cfg, seed, eos, pad, bf16=prec.bf16, desc=f"afd N={n}")
        return sum(len(r) for rows in out for r in rows)

    # Warm-up: first calls pay one-off costs (kernels, allocator, autocast caches).
    sample_token_ids(model, prompt_ids[:1], 2, SamplingConfig(max_new_tokens=4), 0, eos, pad, bf16=prec.bf16)
    generate_baseline(base_model, prompt_ids[:1], 2, SamplingConfig(max_new_tokens=4), pad, eos, 0)
    peak = matmul_peak_flops(prec.dtype)
    rows = []
    for n in n_values:
        repeats = afd_repeats if n <= 16 else 1
        with PeakRSS() as afd_mem:
            afd_s, afd_tokens = timed(lambda n=n: afd(n), repeats)
        print(f"[sampling] afd N={n}: {afd_tokens} tokens in {afd_s:.1f} s (median of {repeats})", flush=True)
        with PeakRSS() as base_mem:
            base_s, base_tokens = timed(
                lambda n=n: generate_baseline(base_model, prompt_ids, n, cfg, pad, eos, 1), 1
            )
        print(f"[sampling] generate N={n}: {base_tokens} tokens in {base_s:.1f} s", flush=True)
        afd_tps, base_tps = afd_tokens / afd_s, base_tokens / base_s
        goal = TARGETS.get(n)
        rows.append(
            Row(
                f"BoN sampling N={n}",
                afd_tps,
                base_tps,
                "tokens/s",
                target=f"afd/base >= {goal:g}" if goal else "",
                met=afd_tps / base_tps >= goal if goal else None,
                afd_mem=afd_mem.mib,
                baseline_mem=base_mem.mib,
                note=(
                    f"{setting}; wall {afd_s:.1f} s vs {base_s:.1f} s for {n_prompts}x{n} responses"
                    if n == n_values[0]
                    else f"wall {afd_s:.1f} s vs {base_s:.1f} s for {n_prompts}x{n} responses"
                ),
            )
        )
        rows.append(
            peak_share_row(
                f"decoding N={n}",
                2 * params * afd_tps,
                2 * params * base_tps,
                peak,
                PEAK_GOAL,
                f"2 x {params / 1e6:.1f}M params per generated token",
            )
        )
    return rows
