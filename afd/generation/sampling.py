"""Sampling responses from a policy with the chat template: Best-of-N pools, evaluation samples and
reward-model training samples.

By default each prompt is encoded once and its n samples are decoded from the shared prefix (the prompt's
KV cache expanded n times), finished samples leave the batch at their EOS; `sampling.shared_prefix=false`
falls back to plain batched `generate`. Both draw each token from softmax(logits / T) after nucleus (top-p)
filtering, top-k off, exactly as `generate(do_sample=True, top_k=0)` does.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache

from afd.config.run import SamplingConfig
from afd.generation.kv_cache import autocast_weight_copies, expand_cache, prefill
from afd.generation.nucleus import sample_next_tokens
from afd.generation.prompts import clean_response, encode_prompts
from afd.generation.streams import stream_keys, uniforms
from afd.runtime.distributed import gather_shares, my_share

log = logging.getLogger(__name__)

# pick(logits [rows, vocab] float32, sample ids [rows], decode step) -> next token ids [rows]
Picker = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@torch.inference_mode()
def sample_responses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[dict]],
    n: int,
    cfg: SamplingConfig,
    seed: int,
    desc: str = "sampling",
    bf16: bool = False,
) -> list[list[str]]:
    """`n` responses for each prompt (list of chat messages), in prompt order; `bf16` decodes under
    bf16 autocast (the same temperature / top_p semantics, on bf16 matmuls)."""
    encoded = encode_prompts(tokenizer, prompts, cfg.max_prompt_tokens)
    ids = sample_token_ids(
        model, encoded, n, cfg, seed, tokenizer.eos_token_id, tokenizer.pad_token_id, bf16=bf16, desc=desc
    )
    return [
        [clean_response(t) for t in tokenizer.batch_decode(rows, skip_special_tokens=True)] for rows in ids
    ]


@torch.inference_mode()
def sample_token_ids(
    model: PreTrainedModel,
    prompt_ids: Sequence[Sequence[int]],
    n: int,
    cfg: SamplingConfig,
    seed: int,
    eos_token_id: int | None,
    pad_token_id: int,
    bf16: bool = False,
    desc: str = "sampling",
) -> list[list[list[int]]]:
    """Response token ids: `result[i]` holds the n responses to prompt i, each ending at its first EOS
    (included) or after `cfg.max_new_tokens` tokens. Sample k of a prompt draws from its own random stream
    (afd/generation/streams.py), so it depends on the prompt, the seed and k only: the same whatever else
    is sampled with it, in any batch, on any rank. Inside `sharded()` the ranks split the prompt groups
    and every rank returns all of them."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    was_training = model.training
    model.eval()
    try:
        if cfg.shared_prefix:
            keys = stream_keys(prompt_ids, n, seed)

            def pick(logits: torch.Tensor, sample_ids: torch.Tensor, step: int) -> torch.Tensor:
                draws = uniforms(keys[sample_ids.cpu().numpy()], step)
                uniform = torch.from_numpy(draws).to(device=logits.device, dtype=torch.float32)
                return sample_next_tokens(logits, cfg.temperature, cfg.top_p, uniform=uniform)

            return _sample_shared_prefix(
                model, prompt_ids, n, cfg, eos_token_id, pad_token_id, bf16, desc, pick
            )
        return _sample_generate(model, prompt_ids, n, cfg, seed, eos_token_id, pad_token_id, bf16, desc)
    finally:
        model.train(was_training)


def _eos_hit(tokens: torch.Tensor, eos_token_id: int | None) -> torch.Tensor:
    if eos_token_id is None:
        return torch.zeros_like(tokens, dtype=torch.bool)
    return tokens == eos_token_id


def _plan_groups(lengths: Sequence[int], n: int, batch_size: int) -> list[list[int]]:
    """Prompts prefilled together, similar lengths side by side (less left padding), with at most
    `batch_size` decoded rows per group; a prompt with n > batch_size forms its own group."""
    per_group = max(1, batch_size // n)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[s : s + per_group] for s in range(0, len(order), per_group)]


def _sample_shared_prefix(
    model,
    prompt_ids: Sequence[Sequence[int]],
    n: int,
    cfg: SamplingConfig,
    eos_token_id: int | None,
    pad_token_id: int,
    bf16: bool,
    desc: str,
    pick: Picker,
) -> list[list[list[int]]]:
    if cfg.batch_size < 1:
        raise ValueError(f"sampling.batch_size={cfg.batch_size}: expected >= 1")
    done: dict[int, list[list[int]]] = {}  # prompt index -> its n responses
    device = model.device
    mine = my_share(_plan_groups([len(p) for p in prompt_ids], n, cfg.batch_size))
    bar = tqdm(total=sum(len(g) for _, g in mine) * n, desc=desc, unit="seq")
    with autocast_weight_copies(model, bf16), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for _, group in mine:
            prefix, mask, logits = prefill(model, [prompt_ids[i] for i in group], pad_token_id)
            # Rows: (prompt within the group, sample index); more than batch_size rows only for one prompt.
            rows = [(g, k) for g in range(len(group)) for k in range(n)]
            for i in group:
                done[i] = [[] for _ in range(n)]
            for start in range(0, len(rows), cfg.batch_size):
                chunk = rows[start : start + cfg.batch_size]
                src = torch.tensor([g for g, _ in chunk], device=device)
                sample_ids = torch.tensor([group[g] * n + k for g, k in chunk], device=device)
                tokens = _decode(
                    model,
                    expand_cache(prefix, src, cfg.max_new_tokens),
                    mask[src],
                    logits[src],
                    sample_ids,
                    cfg.max_new_tokens,
                    eos_token_id,
                    pad_token_id,
                    pick,
                )
                for (g, k), toks in zip(chunk, tokens):
                    done[group[g]][k] = toks
                bar.update(len(chunk))
    bar.close()
    done = gather_shares(done)
    return [done[i] for i in range(len(prompt_ids))]


def _decode(
    model,
    cache: Cache,
    mask: torch.Tensor,
    logits: torch.Tensor,
    sample_ids: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int,
    pick: Picker,
) -> list[list[int]]:
    """Sample up to max_new_tokens per row from an expanded prefix cache (row r continues with `logits[r]`).

    A row that reached its EOS is no longer sampled; finished rows leave the batch and the cache once they
    are an eighth of it, so the remaining steps cost only the unfinished rows without paying a cache copy
    on every step.
    """
    device = mask.device
    n_rows = logits.shape[0]
    generated = torch.empty((n_rows, max_new_tokens), dtype=torch.long, device=device)
    lengths = torch.zeros(n_rows, dtype=torch.long, device=device)
    row_of = torch.arange(n_rows, device=device)  # batch row -> output row
    done = torch.zeros(n_rows, dtype=torch.bool, device=device)
    positions = mask.sum(-1)
    for step in range(max_new_tokens):
        live = (~done).nonzero()[:, 0]
        tokens = pick(logits[live], sample_ids[row_of[live]], step)
        generated[row_of[live], step] = tokens
        lengths[row_of[live]] += 1
        if step == max_new_tokens - 1:
            break
        done[live] = _eos_hit(tokens, eos_token_id)
        n_done = int(done.sum())
        if n_done == done.numel():
            break
        inputs = torch.full_like(done, pad_token_id, dtype=torch.long)
        inputs[live] = tokens
        if n_done * 8 >= done.numel():
            keep = (~done).nonzero()[:, 0]
            cache.batch_select_indices(keep)
            row_of, done, mask, positions, inputs = (
                row_of[keep],
                done[keep],
                mask[keep],
                positions[keep],
                inputs[keep],
            )
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        out = model(
            input_ids=inputs[:, None],
            attention_mask=mask,
            position_ids=positions[:, None],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        positions = positions + 1
        logits = out.logits[:, -1].float()
    generated, lengths = generated.cpu(), lengths.tolist()
    return [generated[r, : lengths[r]].tolist() for r in range(n_rows)]


def _sample_generate(
    model,
    prompt_ids: Sequence[Sequence[int]],
    n: int,
    cfg: SamplingConfig,
    seed: int,
    eos_token_id: int | None,
    pad_token_id: int,
    bf16: bool,
    desc: str,
) -> list[list[list[int]]]:
    """The plain path: `generate(num_return_sequences=...)` on one prompt at a time (so a prompt is
    encoded once per sample), up to `cfg.batch_size` samples a call, each call seeded from the prompt's
    stream so that a prompt's samples do not depend on the others."""
    keys = stream_keys(prompt_ids, n, seed)
    done: dict[int, list[list[int]]] = {}
    device = model.device
    mine = my_share(prompt_ids)
    bar = tqdm(total=len(mine) * n, desc=desc, unit="seq")
    for i, ids in mine:
        done[i] = []
        for start in range(0, n, cfg.batch_size):
            rows = min(cfg.batch_size, n - start)
            torch.manual_seed(int(keys[i * n + start] >> 1))
            input_ids = torch.tensor([list(ids)], dtype=torch.long, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                generated = model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    do_sample=True,
                    temperature=cfg.temperature,
                    top_p=cfg.top_p,
                    top_k=0,
                    max_new_tokens=cfg.max_new_tokens,
                    num_return_sequences=rows,
                    pad_token_id=pad_token_id,
                    eos_token_id=eos_token_id,
                )
            done[i] += [cut_at_eos(row, eos_token_id) for row in generated[:, input_ids.shape[1] :].tolist()]
            bar.update(rows)
    bar.close()
    done = gather_shares(done)
    return [done[i] for i in range(len(prompt_ids))]


def cut_at_eos(row: list[int], eos_token_id: int | None) -> list[int]:
    """generate pads a finished row after its EOS; keep the tokens up to and including the EOS."""
    if eos_token_id is not None and eos_token_id in row:
        return row[: row.index(eos_token_id) + 1]
    return row
