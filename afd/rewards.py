"""Rewards that score (prompt, response) pairs: sequence-classifier reward models (golden or learned),
the training-free log-ratio reward, and the length / random sanity baselines (paper sections 3, 6)."""

from __future__ import annotations

import json
import logging
from typing import Hashable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from tqdm.auto import tqdm

from afd.config import RMTextFormat

log = logging.getLogger(__name__)

Messages = list[dict]


@runtime_checkable
class Reward(Protocol):
    """Scores (prompt, response) pairs; prompts are chat message lists of {"role", "content"}.
    Golden rewards (afd/golden.py) and proxy rewards (this module) share it."""

    name: str

    def score(self, prompts: list[Messages], responses: list[str]) -> np.ndarray:
        """One float64 score per (prompt, response) pair, in input order."""
        ...


def check_pairs(prompts: Sequence, responses: Sequence) -> None:
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")


def render_hh(messages: Messages, response: str) -> str:
    """Anthropic HH text of a conversation plus the response; system content opens the first human turn."""
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    parts = []
    for m in messages:
        if m["role"] == "user":
            content = f"{system}\n{m['content']}" if system else m["content"]
            system = ""
            parts.append(f"\n\nHuman: {content}")
        elif m["role"] == "assistant":
            parts.append(f"\n\nAssistant: {m['content']}")
    if system:  # a system message but no human turn
        parts.insert(0, f"\n\nHuman: {system}")
    parts.append(f"\n\nAssistant: {response.lstrip()}")
    return "".join(parts)


def render_pair(tokenizer, text_format: RMTextFormat, messages: Messages, response: str) -> str:
    """The text a classifier reads for one pair (the same in reward-model training and scoring)."""
    if text_format == RMTextFormat.hh:
        return render_hh(messages, response)
    return tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": response}], tokenize=False
    )


def encode_pairs(
    tokenizer,
    text_format: RMTextFormat,
    prompts: Sequence[Messages],
    responses: Sequence[str],
    max_length: int,
) -> list[list[int]]:
    """Token ids, truncated on the left: the response is at the end and must survive truncation."""
    check_pairs(prompts, responses)
    texts = [render_pair(tokenizer, text_format, p, r) for p, r in zip(prompts, responses)]
    tokenizer.truncation_side = "left"
    # A chat template writes its own special tokens (bos); HH text is plain and gets the tokenizer's.
    add_special = text_format == RMTextFormat.hh
    return tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=add_special)[
        "input_ids"
    ]


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
    (their suffix is the whole sequence). Groups sit together, longest first."""
    shared = sorted(
        (i for i in range(len(ids)) if split[i] > 0), key=lambda i: (-split[i], groups[i], -len(ids[i]))
    )
    alone = sorted((i for i in range(len(ids)) if split[i] == 0), key=lambda i: -len(ids[i]))
    batches = [
        order[s : s + batch_size] for order in (shared, alone) for s in range(0, len(order), batch_size)
    ]
    for idx in tqdm(batches, desc=desc, disable=len(batches) < 2):
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
        yield idx, prefixes, src, suffix, mask


def forward_with_prefixes(model, prefixes, src, suffix, suffix_mask, pad_id: int, lm_logits: bool):
    """The model's output on the suffix rows, each continuing its prefix: the prefixes are encoded once
    (left-padded) and their KV cache expanded to the rows. Also returns the prefixes' last-position
    logits per row (lm_logits=True, a causal LM), which predict each suffix's first token."""
    from afd.sampling import expand_cache, prefill  # imports transformers: lazily

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


def pooled_index(ids: Sequence[int], pad_id: int | None) -> int:
    """The token a transformers sequence classifier pools: the rightmost one that is not padding."""
    if pad_id is None:
        return len(ids) - 1
    return max((j for j, t in enumerate(ids) if t != pad_id), default=len(ids) - 1)


class ClassifierReward:
    """A sequence-classification reward model; score = logit 0 of the rendered (prompt, response)."""

    def __init__(
        self,
        name,
        model,
        tokenizer,
        text_format: RMTextFormat,
        max_length: int,
        batch_size: int,
        bf16: bool = False,
    ):
        self.name = name
        self.bf16 = bf16
        """Score under bf16 autocast: for proxy rewards; golden ones stay fp32 to compare across runs."""
        self.path = None
        """The cache entry of a reward model afd trained (None for a golden one)."""
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.text_format = text_format
        self.max_length = max_length
        self.batch_size = batch_size

    def score(self, prompts: list[Messages], responses: list[str]) -> np.ndarray:
        """Batched, no gradient; the pairs of one prompt (a Best-of-N pool) encode their common tokens
        once and only their own tails after it."""
        from afd.sampling import autocast_weight_copies

        ids = encode_pairs(self.tokenizer, self.text_format, prompts, responses, self.max_length)
        scores = np.zeros(len(ids), dtype=np.float64)
        pad = self.tokenizer.pad_token_id
        # The pooled token must be recomputed with the suffix: the prefix stops before it.
        pool_pad = self.model.config.get_text_config().pad_token_id
        groups = prompt_groups(prompts)
        split = shared_prefix_lengths(ids, groups, [pooled_index(x, pool_pad) for x in ids])
        device = self.model.device
        with (
            torch.inference_mode(),
            autocast_weight_copies(self.model, self.bf16),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16),
        ):
            for idx, prefixes, src, suffix, mask in shared_prefix_batches(
                ids, split, groups, self.batch_size, pad, self.name
            ):
                out, _ = forward_with_prefixes(self.model, prefixes, src, suffix, mask, pad, lm_logits=False)
                scores[idx] = out.logits[:, 0].float().cpu().numpy()
        return scores


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
    from afd.sampling import autocast_weight_copies, encode_prompts

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
            logits = result.logits.float()
            if last is not None:
                # The prefix's last logits first: column c is then sequence position split - 1 + c.
                logits = torch.cat([last[:, None], logits], dim=1)
            logp = torch.log_softmax(logits, dim=-1)
            for row, i in enumerate(idx):
                start, end = len(prompt_ids[i]), len(ids[i])
                # Token t is predicted at sequence position t - 1.
                offset = split[i] - 1 if last is not None else 0
                targets = torch.tensor(ids[i][start:end], device=logp.device)
                cols = torch.arange(start - 1 - offset, end - 1 - offset, device=logp.device)
                out[i] = float(logp[row, cols, targets].sum())
    return out


class LogRatioReward:
    """r(y|x) = log pi_SFT(y|x) - log pi_init(y|x): the optimal Init-SFT discriminator logit under a
    logistic loss, with no training."""

    name = "log_ratio"

    def __init__(self, sft, base, tokenizer, max_prompt_tokens: int, batch_size: int, bf16: bool = False):
        self.sft, self.base, self.tokenizer = sft, base, tokenizer
        self.max_prompt_tokens, self.batch_size, self.bf16 = max_prompt_tokens, batch_size, bf16

    def score(self, prompts, responses):
        args = (self.tokenizer, prompts, responses, self.max_prompt_tokens, self.batch_size)
        sft = response_logprobs(self.sft, *args, desc="log pi_SFT", bf16=self.bf16)
        return sft - response_logprobs(self.base, *args, desc="log pi_init", bf16=self.bf16)


class LengthReward:
    """Sanity baseline: the response's length in tokens."""

    name = "length"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def score(self, prompts, responses):
        check_pairs(prompts, responses)
        return np.array(
            [len(self.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses],
            dtype=np.float64,
        )


class RandomReward:
    """Sanity baseline: an i.i.d. uniform score, so BoN picks a uniformly random sample."""

    name = "random"

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def score(self, prompts, responses):
        check_pairs(prompts, responses)
        return self.rng.random(len(responses))


# r(D) for D = sigmoid(logit), written in the logit for numerical stability.
DIVERGENCE_REWARDS = {
    "reverse_kl": lambda z: z,  # log D - log(1 - D)
    "js": lambda z: -np.logaddexp(0.0, -z),  # log D: the GAN's non-saturating generator reward
    "gail": lambda z: np.logaddexp(0.0, z),  # -log(1 - D): the minimax generator reward (GAIL)
}


class DiscriminatorReward:
    """The policy's reward from a discriminator (demonstrations = 1): the divergence's transform of its
    logit (paper section 2: reverse KL gives the logit itself)."""

    def __init__(self, discriminator: Reward, divergence: str):
        self.discriminator, self.divergence = discriminator, divergence
        self.name = f"{divergence} of {discriminator.name}"
        self.path = getattr(discriminator, "path", None)

    def score(self, prompts, responses):
        return DIVERGENCE_REWARDS[self.divergence](self.discriminator.score(prompts, responses))
