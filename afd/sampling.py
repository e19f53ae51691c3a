"""Sampling responses from a policy: batched, left-padded generation with the chat template.

Used for evaluation samples, reward-model training samples and Best-of-N pools.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from afd.config import SamplingConfig

log = logging.getLogger(__name__)

# GPT-2-style models rendered with the HH template continue the dialogue on their own.
STOP_STRINGS = ("\n\nHuman:", "\n\nAssistant:")


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict]) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Sequence[dict]], max_prompt_tokens: int
) -> list[list[int]]:
    """Token ids of each rendered prompt, keeping the last `max_prompt_tokens` (the latest turns)."""
    texts = [render_prompt(tokenizer, p) for p in prompts]
    # The chat template already carries the special tokens the model expects.
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [x[-max_prompt_tokens:] for x in ids]


def clean_response(text: str) -> str:
    for stop in STOP_STRINGS:
        text = text.split(stop, 1)[0]
    return text.strip()


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
    jobs = [(i, ids) for i, ids in enumerate(encoded) for _ in range(n)]
    # Similar lengths in one batch waste less compute on padding.
    order = sorted(range(len(jobs)), key=lambda j: len(jobs[j][1]))
    out: list[list[str]] = [[] for _ in prompts]
    pad_id = tokenizer.pad_token_id
    device = model.device
    batch_seeds = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(jobs), desc=desc, unit="seq")
    for start in range(0, len(order), cfg.batch_size):
        batch = [jobs[j] for j in order[start : start + cfg.batch_size]]
        width = max(len(ids) for _, ids in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (_, ids) in enumerate(batch):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        # One seed per batch drawn from the stage seed: the same call reproduces the same samples
        # (the output still depends on sampling.batch_size, which is part of the cache key).
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=batch_seeds)))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            generated = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                do_sample=True,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                top_k=0,
                max_new_tokens=cfg.max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
        for (i, _), text in zip(batch, texts):
            out[i].append(clean_response(text))
        bar.update(len(batch))
    bar.close()
    model.train(was_training)
    return out
