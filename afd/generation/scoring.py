"""Scoring many responses to the same prompts: the prompt (their common prefix) is encoded once and only
each response's own tokens after it (a Best-of-N pool of M samples costs one prompt encoding, not M).
Used by classifier rewards and by a policy's log-probabilities (the log-ratio reward, KL estimates)."""

from __future__ import annotations

import json
from typing import Hashable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from afd.generation.kv_cache import autocast_weight_copies, expand_cache, prefill
from afd.generation.prompts import check_pairs, encode_prompts
from afd.runtime.distributed import gather_shares, my_share

Messages = list[dict]


def group_ids(keys: Sequence[Hashable]) -> list[int]:
    """Equal keys -> equal small ints, in order of first appearance."""
    seen: dict[Hashable, int] = {}
    return [seen.setdefault(k, len(seen)) for k in keys]


def prompt_groups(prompts: Sequence[Messages]) -> list[int]:
    """Pairs with the same prompt (a Best-of-N pool) share its tokens: one group id per distinct prompt."""
    return group_ids([json.dumps(p, sort_keys=True) for p in prompts])


def shared_prefix_lengths(
    ids: Sequence[Sequence[int]], groups: Sequence[int], limits: Sequence[int]
) -> list[int]:
    """Per sequence, how many leading tokens all sequences of its group have in common, capped by each
    member's limit (the first position that must be recomputed); 0 for a group of one."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    split = [0] * len(ids)
    for rows in members.values():
        if len(rows) < 2:
            continue
        n = min(limits[i] for i in rows)
        first = np.asarray(ids[rows[0]][:n])
        for i in rows[1:]:
            m = min(n, len(ids[i]))
            differ = np.flatnonzero(first[:m] != np.asarray(ids[i][:m]))
            n = int(differ[0]) if differ.size else m
        for i in rows:
            split[i] = max(n, 0)
    return split


def shared_prefix_batches(
    ids: Sequence[Sequence[int]],
    split: Sequence[int],
    groups: Sequence[int],
    batch_size: int,
    pad_id: int,
    desc: str,
):
    """Yield (indices, prefixes, src, suffix_ids, suffix_mask): row r is sequence indices[r], the prefix
    prefixes[src[r]] (= its first split tokens, one entry per group in the batch) followed by its
    right-padded suffix. Sequences with nothing to share come in batches of their own with no prefixes
    (their suffix is the whole sequence). Groups sit together, longest first. Inside `sharded()` this rank
    gets its share of the batches: the callers put the results together with `gather_scores`."""
    shared = sorted(
        (i for i in range(len(ids)) if split[i] > 0), key=lambda i: (-split[i], groups[i], -len(ids[i]))
    )
    alone = sorted((i for i in range(len(ids)) if split[i] == 0), key=lambda i: -len(ids[i]))
    batches = [
        order[s : s + batch_size] for order in (shared, alone) for s in range(0, len(order), batch_size)
    ]
    mine = [idx for _, idx in my_share(batches)]
    for idx in tqdm(mine, desc=desc, disable=len(mine) < 2):
        yield (idx, *shared_prefix_batch(ids, split, groups, idx, pad_id))


def gather_scores(scores: np.ndarray, done: Sequence[int]) -> np.ndarray:
    """`scores` with every rank's entries filled in (`done`: the indices this rank computed)."""
    merged = gather_shares({int(i): float(scores[i]) for i in done})
    out = scores.copy()
    for i, v in merged.items():
        out[i] = v
    return out


def shared_prefix_batch(
    ids: Sequence[Sequence[int]], split: Sequence[int], groups: Sequence[int], idx: Sequence[int], pad_id: int
):
    """(prefixes, src, suffix_ids, suffix_mask) of the sequences `idx`: one prefix per group among them
    (its first split tokens), row r continuing prefixes[src[r]] with its right-padded suffix; a sequence
    with nothing to share (split 0) must come in a batch of its own kind, with no prefixes."""
    prefix_of: dict[int, int] = {}
    prefixes, src = [], []
    for i in idx:
        if split[i] > 0:
            if groups[i] not in prefix_of:
                prefix_of[groups[i]] = len(prefixes)
                prefixes.append(ids[i][: split[i]])
            src.append(prefix_of[groups[i]])
    width = max(len(ids[i]) - split[i] for i in idx)
    suffix = torch.full((len(idx), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        tail = ids[i][split[i] :]
        suffix[row, : len(tail)] = torch.tensor(tail, dtype=torch.long)
        mask[row, : len(tail)] = 1
    return prefixes, src, suffix, mask


def forward_with_prefixes(model, prefixes, src, suffix, suffix_mask, pad_id: int, lm_logits: bool):
    """The model's output on the suffix rows, each continuing its prefix: the prefixes are encoded once
    (left-padded) and their KV cache expanded to the rows. Also returns the prefixes' last-position
    logits per row (lm_logits=True, a causal LM), which predict each suffix's first token."""

    device = model.device
    suffix, suffix_mask = suffix.to(device), suffix_mask.to(device)
    if not prefixes:
        return model(input_ids=suffix, attention_mask=suffix_mask), None
    prefix_cache, prefix_mask, last = prefill(model, prefixes, pad_id, lm_logits=lm_logits)
    rows = torch.tensor(src, device=device)
    cache = expand_cache(prefix_cache, rows, suffix.shape[1])
    positions = prefix_mask.sum(-1)[rows, None] + torch.arange(suffix.shape[1], device=device)
    out = model(
        input_ids=suffix,
        attention_mask=torch.cat([prefix_mask[rows], suffix_mask], dim=-1),
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    )
    return out, None if last is None else last[rows]


def response_logprobs(
    model,
    tokenizer,
    prompts: list[Messages],
    responses: list[str],
    max_prompt_tokens: int,
    batch_size: int,
    desc: str,
    bf16: bool = False,
) -> np.ndarray:
    """log pi(y|x): summed log-probabilities of the response tokens (and the end-of-turn token)
    after the rendered generation prompt, as the policy sampled them. Responses to one prompt encode
    the prompt once."""

    check_pairs(prompts, responses)
    prompt_ids = encode_prompts(tokenizer, prompts, max_prompt_tokens)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    response_ids = [tokenizer(r, add_special_tokens=False)["input_ids"] + eos for r in responses]
    ids = [p + r for p, r in zip(prompt_ids, response_ids)]
    groups = group_ids([tuple(p) for p in prompt_ids])
    # The prefix may end at the last prompt token at most: its logits predict the first response token.
    split = shared_prefix_lengths(
        ids, groups, [len(p) if len(r) else 0 for p, r in zip(prompt_ids, response_ids)]
    )
    out = np.zeros(len(ids), dtype=np.float64)
    done: list[int] = []
    pad = tokenizer.pad_token_id
    with (
        torch.inference_mode(),
        autocast_weight_copies(model, bf16),
        torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16),
    ):
        for idx, prefixes, src, suffix, mask in shared_prefix_batches(
            ids, split, groups, batch_size, pad, desc
        ):
            result, last = forward_with_prefixes(model, prefixes, src, suffix, mask, pad, lm_logits=True)
            logits = result.logits
            done += idx
            for row, i in enumerate(idx):
                start, end = len(prompt_ids[i]), len(ids[i])
                # Token t is predicted at sequence position t - 1; the suffix's column c is position
                # split + c, and the prefix's last logits (position split - 1) predict its first token.
                first = start - 1 - split[i] if last is not None else start - 1
                rows = logits[row, max(first, 0) : end - 1 - (split[i] if last is not None else 0)]
                if first < 0:
                    rows = torch.cat([last[row, None], rows])
                # One row's positions at a time, without a log-softmax copy of the whole batch's logits.
                rows = rows.float()
                targets = torch.tensor(ids[i][start:end], device=rows.device)
                picked = rows.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(rows, dim=-1)
                out[i] = float(picked.sum())
    return gather_scores(out, done)
