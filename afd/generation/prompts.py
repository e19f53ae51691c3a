"""Prompts and responses as the policy sees them: rendering with the chat template, encoding (keeping
the latest turns), cleaning a sampled response, and counting what does not fit the training length."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

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
    cut = sum(len(x) > max_prompt_tokens for x in ids)
    if cut:
        _warn_once(
            f"{cut} of {len(ids)} prompts are longer than sampling.max_prompt_tokens={max_prompt_tokens}: "
            f"they keep their last {max_prompt_tokens} tokens (the latest turns)"
        )
    return [x[-max_prompt_tokens:] for x in ids]


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Sampling and scoring stages encode the same prompt sets again and again: say it once a process."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def warn_over_length(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[dict]],
    responses: Sequence[str],
    max_length: int,
    what: str,
    consequence: str,
) -> int:
    """Log a WARNING with the count of (prompt, response) conversations longer than `max_length`
    tokens (model.max_length) and what the trainer does with them; returns the count."""
    texts = [
        tokenizer.apply_chat_template([*p, {"role": "assistant", "content": r}], tokenize=False)
        for p, r in zip(prompts, responses)
    ]
    over = sum(len(x) > max_length for x in tokenizer(texts, add_special_tokens=False)["input_ids"])
    if over:
        log.warning(
            "%s: %d of %d exceed model.max_length=%d tokens with their prompt; %s",
            what,
            over,
            len(texts),
            max_length,
            consequence,
        )
    return over


def clean_response(text: str) -> str:
    for stop in STOP_STRINGS:
        text = text.split(stop, 1)[0]
    return text.strip()


def check_pairs(prompts: Sequence, responses: Sequence) -> None:
    """Prompts and responses scored together must pair up one to one."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
