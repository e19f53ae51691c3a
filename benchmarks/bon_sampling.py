"""Best-of-N sampling: afd's shared-prefix sampler against `generate(num_return_sequences=N)` on the same
prompts, and the decoding FLOP/s each reaches against a bf16 matmul peak measured in the same run."""

from __future__ import annotations

import torch

from afd.config.run import SamplingConfig
from afd.generation.kv_cache import left_padded
from afd.generation.prompts import encode_prompts
from afd.generation.sampling import cut_at_eos, sample_token_ids
from benchmarks.common import PeakRSS, Row, chitchat_test_prompts, load_smollm2, timed

# The baseline's memory budget: 8 prompts x 16 sequences, as at N=16.
MAX_BASELINE_ROWS = 128


def matmul_peak_flops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a square matmul in `dtype`: the machine's practical peak for dense bf16 work."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    seconds, _ = timed(lambda: a @ b, repeats)
    return 2 * n**3 / seconds


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


def run(n_values=(16, 64), n_prompts: int = 8, context_turns: int = 8, afd_repeats: int = 3) -> list[Row]:
    cfg = SamplingConfig()  # afd's defaults: T=1, top_p=0.95, 48 new tokens, batch_size 64
    # afd as it runs on CPU: fp32 master weights under bf16 autocast. The baseline gets its fastest plain
    # setting, bf16 weights (what shared/offline.md measured ~210 tokens/s with).
    model, tok = load_smollm2(torch.float32)
    model_bf16, _ = load_smollm2(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    eos, pad = tok.eos_token_id, tok.pad_token_id
    prompt_ids = encode_prompts(tok, chitchat_test_prompts(n_prompts, context_turns), cfg.max_prompt_tokens)
    lengths = [len(p) for p in prompt_ids]
    setting = (
        f"{n_prompts} chitchat test prompts ({min(lengths)}-{max(lengths)} tokens, mean "
        f"{sum(lengths) / len(lengths):.0f}), {cfg.max_new_tokens} new tokens, T={cfg.temperature}, "
        f"top_p={cfg.top_p}; afd: fp32 weights + bf16 autocast, batch_size={cfg.batch_size}; "
        "baseline: bf16 weights"
    )
    print(f"[sampling] {setting}", flush=True)

    def afd(n: int, seed: int = 0) -> int:
        out = sample_token_ids(model, prompt_ids, n, cfg, seed, eos, pad, bf16=True, desc=f"afd N={n}")
        return sum(len(r) for rows in out for r in rows)

    # Warm-up: first calls pay one-off costs (kernels, allocator, autocast caches).
    sample_token_ids(model, prompt_ids[:1], 2, SamplingConfig(max_new_tokens=4), 0, eos, pad, bf16=True)
    generate_baseline(model_bf16, prompt_ids[:1], 2, SamplingConfig(max_new_tokens=4), pad, eos, 0)
    peak = matmul_peak_flops(torch.bfloat16)
    rows = []
    for n in n_values:
        repeats = afd_repeats if n <= 16 else 1
        with PeakRSS() as afd_mem:
            afd_s, afd_tokens = timed(lambda n=n: afd(n), repeats)
        print(f"[sampling] afd N={n}: {afd_tokens} tokens in {afd_s:.1f} s (median of {repeats})", flush=True)
        with PeakRSS() as base_mem:
            base_s, base_tokens = timed(
                lambda n=n: generate_baseline(model_bf16, prompt_ids, n, cfg, pad, eos, 1), 1
            )
        print(f"[sampling] generate N={n}: {base_tokens} tokens in {base_s:.1f} s", flush=True)
        afd_tps, base_tps = afd_tokens / afd_s, base_tokens / base_s
        target = "afd/base >= 3" if n == 16 else ""
        rows.append(
            Row(
                f"BoN sampling N={n}",
                afd_tps,
                base_tps,
                "tokens/s",
                target=target,
                met=(afd_tps / base_tps >= 3) if n == 16 else None,
                afd_mem=afd_mem.mib,
                baseline_mem=base_mem.mib,
                note=(
                    f"{setting}; wall {afd_s:.1f} s vs {base_s:.1f} s for {n_prompts}x{n} responses"
                    if n == n_values[0]
                    else f"wall {afd_s:.1f} s vs {base_s:.1f} s for {n_prompts}x{n} responses"
                ),
            )
        )
        if n == n_values[0]:
            flops_afd, flops_base = 2 * params * afd_tps, 2 * params * base_tps
            rows.append(
                Row(
                    f"decoding / bf16 matmul peak (N={n})",
                    100 * flops_afd / peak,
                    100 * flops_base / peak,
                    "% of peak",
                    note=(
                        f"2 x {params / 1e6:.1f}M params per generated token: afd {flops_afd / 1e9:.0f}, "
                        f"generate {flops_base / 1e9:.0f} GFLOP/s; bf16 2048^3 matmul peak "
                        f"{peak / 1e9:.0f} GFLOP/s measured in this run"
                    ),
                )
            )
    return rows
