"""Training a reward model on pairs with each prompt encoded once per batch (paper section 3: reward = the
classifier's logit). The sequences of one prompt (its 10 pi_init and 10 pi_SFT samples, say) share every
token of the prompt; a batch holds consecutive sequences of a few prompts, the prompts run through the
model once (with gradients), and each sequence only adds its response. With 20 responses of ~25 tokens
to a ~100-token prompt that is about a quarter of the tokens a padded batch of whole sequences costs.

A transformers Trainer whose loss is computed on these batches: pointwise BCE on the logit (the paper's
discriminator loss) or Bradley-Terry on (chosen, rejected) pairs. Everything else (optimizer, schedule,
logging, accelerate, LoRA) is the Trainer's.
"""

from __future__ import annotations

import random
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any, Iterator, Sequence

import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from transformers import Trainer
from transformers.cache_utils import Cache, DynamicLayer
from transformers.modeling_layers import GradientCheckpointingLayer

from afd.config.run import RMTextFormat
from afd.data.pairs import Pair
from afd.generation.kv_cache import left_padded
from afd.generation.scoring import prompt_groups, shared_prefix_batch, shared_prefix_lengths
from afd.rewards.classifier import encode_pairs, pooled_index


def pair_batches(
    tokenizer, pairs: Sequence[Pair], max_length: int, per_batch: int, pointwise: bool, seed: int
) -> list[dict[str, Any]]:
    """The training batches: the pairs of each prompt kept together, prompts in a seeded order, cut into
    batches of `per_batch` sequences (pointwise, labels 1 and 0) or `per_batch` pairs (Bradley-Terry)."""
    order = sorted(range(len(pairs)), key=lambda i: pairs[i].prompt_id)
    by_prompt: dict[str, list[int]] = {}
    for i in order:
        by_prompt.setdefault(pairs[i].prompt_id, []).append(i)
    prompt_order = sorted(by_prompt)
    random.Random(seed).shuffle(prompt_order)
    ordered = [pairs[i] for pid in prompt_order for i in by_prompt[pid]]
    # Sequence 2j is pair j's positive, 2j + 1 its negative.
    prompts = [p.prompt for p in ordered for _ in range(2)]
    responses = [r for p in ordered for r in (p.positive, p.negative)]
    ids = encode_pairs(tokenizer, RMTextFormat.chat_template, prompts, responses, max_length)
    groups = prompt_groups(prompts)
    # The pooled (last) token is recomputed with its response: the shared prefix stops before it.
    split = shared_prefix_lengths(ids, groups, [pooled_index(x, None) for x in ids])
    step = per_batch if pointwise else 2 * per_batch
    batches = []
    for start in range(0, len(ids), step):
        idx = list(range(start, min(start + step, len(ids))))
        if all(split[i] > 0 for i in idx):
            prefixes, src, suffix, mask = shared_prefix_batch(ids, split, groups, idx, tokenizer.pad_token_id)
        else:  # a sequence sharing nothing with its group: the batch goes whole
            prefixes, src, suffix, mask = shared_prefix_batch(
                ids, [0] * len(ids), groups, idx, tokenizer.pad_token_id
            )
        labels = torch.tensor([1.0 - (i % 2) for i in idx])
        batches.append(
            {"prefixes": prefixes, "src": src, "suffix_ids": suffix, "suffix_mask": mask, "labels": labels}
        )
    return batches


def shared_prefix_scores(model, batch: dict[str, Any], checkpointing: bool = False) -> torch.Tensor:
    """The classifier's logit for every row of a batch, differentiably: prefixes through the model once
    (left-padded), their keys and values gathered to the rows, then each row's suffix on top. With
    `checkpointing`, every decoder layer of both passes recomputes its activations in the backward pass
    (`checkpointed_layers`)."""
    device = model.device
    suffix, suffix_mask = batch["suffix_ids"].to(device), batch["suffix_mask"].to(device)
    layers = checkpointed_layers(model) if checkpointing else nullcontext()
    if not batch["prefixes"]:
        # Whole sequences (a group that a left-truncated sequence shares nothing with): no cache at all.
        with layers:
            return model(input_ids=suffix, attention_mask=suffix_mask, use_cache=False).logits[:, 0]
    # Left padding with any token: the attention mask hides it.
    prefix_ids, prefix_mask = (t.to(device) for t in left_padded(batch["prefixes"], 0))
    positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
    n_layers = model.config.get_text_config().num_hidden_layers
    prefix_cache = Cache(layers=[ReplayableLayer() for _ in range(n_layers)])
    rows = torch.tensor(batch["src"], device=device)
    suffix_positions = prefix_mask.sum(-1)[rows, None] + torch.arange(suffix.shape[1], device=device)
    with layers:
        model(
            input_ids=prefix_ids,
            attention_mask=prefix_mask,
            position_ids=positions,
            past_key_values=prefix_cache,
            use_cache=True,
        )
        written = [layer.written for layer in prefix_cache.layers]
        rows_cache = Cache(layers=[ReplayableLayer(keys[rows], values[rows]) for keys, values in written])
        out = model(
            input_ids=suffix,
            attention_mask=torch.cat([prefix_mask[rows], suffix_mask], dim=-1),
            position_ids=suffix_positions,
            past_key_values=rows_cache,
            use_cache=True,
        )
    return out.logits[:, 0]


class ReplayableLayer(DynamicLayer):
    """A KV cache layer that gives the same answer when a checkpointed decoder layer runs again in the
    backward pass: it holds a fixed past (the shared prompt's keys and values, gathered to the rows, or
    nothing) and returns it followed by the new states, which it remembers (`written`) but never appends.
    A DynamicLayer would append them a second time on the replay, which is why transformers drops the
    cache of checkpointed layers."""

    def __init__(self, keys: torch.Tensor | None = None, values: torch.Tensor | None = None):
        super().__init__()
        self.written: tuple[torch.Tensor, torch.Tensor] | None = None
        if keys is not None:
            self.keys, self.values = keys, values
            self.dtype, self.device = keys.dtype, keys.device
            self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        self.written = (key_states, value_states)
        if not self.is_initialized:
            return key_states, value_states
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


@contextmanager
def checkpointed_layers(model) -> Iterator[None]:
    """Activation checkpointing on `model`'s decoder layers for the forward passes inside the block only,
    keeping the KV cache they are given: every cache passed inside must be made of ReplayableLayer.
    Trainer-wide checkpointing would drop the cache. The recompute in the backward pass runs after the
    block, from what the checkpoint saved; the flags are read only when a layer is called."""
    layers = [
        m
        for m in model.modules()
        if isinstance(m, GradientCheckpointingLayer) and not m.gradient_checkpointing
    ]
    for layer in layers:
        layer.gradient_checkpointing = True
        layer._can_checkpoint_with_cache = True
        layer._gradient_checkpointing_func = partial(checkpoint, use_reentrant=False)
    try:
        yield
    finally:
        for layer in layers:
            layer.gradient_checkpointing = False
            del layer._can_checkpoint_with_cache  # back to the class's False


class SharedPrefixRewardTrainer(Trainer):
    """A Trainer over `pair_batches`: one of them per step (its args must say
    per_device_train_batch_size=1 and no activation checkpointing: `checkpointing` here does it with the
    prompt's cache kept), in the Trainer's seeded shuffled order."""

    def __init__(self, *args, pointwise: bool, checkpointing: bool, **kwargs):
        super().__init__(*args, data_collator=_one_batch, **kwargs)
        self.pointwise = pointwise
        self.checkpointing = checkpointing

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        scores = shared_prefix_scores(model, inputs, self.checkpointing)
        if self.pointwise:
            loss = F.binary_cross_entropy_with_logits(scores.float(), inputs["labels"].to(scores.device))
        else:
            # Rows alternate chosen (positive), rejected (negative).
            loss = -F.logsigmoid((scores[0::2] - scores[1::2]).float()).mean()
        return (loss, scores) if return_outputs else loss


def _one_batch(rows: list[dict[str, Any]]) -> dict[str, Any]:
    (batch,) = rows
    return batch
