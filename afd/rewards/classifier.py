"""A sequence classifier as a reward: score = its logit on the rendered (prompt, response) text. Golden
reward models and the reward models afd trains both score through it (paper section 3: reward = logit)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from afd.config.run import RMTextFormat
from afd.generation.kv_cache import autocast_weight_copies
from afd.generation.scoring import (
    forward_with_prefixes,
    gather_scores,
    prompt_groups,
    shared_prefix_batches,
    shared_prefix_lengths,
)
from afd.rewards.reward import Messages, check_pairs


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
    """Token ids, truncated on the left: the response is at the end and must survive truncation. (Sliced
    here rather than by setting the shared tokenizer's truncation_side, which would change it for every
    other user of the tokenizer.)"""
    check_pairs(prompts, responses)
    texts = [render_pair(tokenizer, text_format, p, r) for p, r in zip(prompts, responses)]
    if text_format != RMTextFormat.hh:
        # A chat template writes its own special tokens (bos).
        return [x[-max_length:] for x in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    # HH text is plain and gets the tokenizer's special tokens, kept around the truncated text: truncate
    # the plain encoding on the left, then let the fast tokenizer's post-processor add them.
    backend = tokenizer.backend_tokenizer
    encodings = backend.encode_batch(texts, add_special_tokens=False)
    room = max_length - tokenizer.num_special_tokens_to_add()
    for encoding in encodings:
        encoding.truncate(room, direction="left")
    return [backend.post_process(encoding).ids for encoding in encodings]


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
        ids = encode_pairs(self.tokenizer, self.text_format, prompts, responses, self.max_length)
        scores = np.zeros(len(ids), dtype=np.float64)
        done: list[int] = []
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
                done += idx
        return gather_scores(scores, done)
