"""Rewards that score (prompt, response) pairs: sequence-classifier reward models (golden or learned),
the training-free log-ratio reward, and the length / random sanity baselines (paper sections 3, 6)."""

from __future__ import annotations

import logging
from typing import Protocol, Sequence, runtime_checkable

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


def padded_batches(ids: Sequence[Sequence[int]], batch_size: int, pad_id: int, desc: str):
    """Yield (indices, input_ids, attention_mask), right-padded, longest first (less padding, and an
    out-of-memory error shows on the first batch)."""
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    n_batches = (len(ids) + batch_size - 1) // batch_size
    for start in tqdm(range(0, len(ids), batch_size), total=n_batches, desc=desc, disable=n_batches < 2):
        idx = order[start : start + batch_size]
        width = max(len(ids[i]) for i in idx)
        input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
            attention[row, : len(ids[i])] = 1
        yield idx, input_ids, attention


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
        ids = encode_pairs(self.tokenizer, self.text_format, prompts, responses, self.max_length)
        scores = np.zeros(len(ids), dtype=np.float64)
        device = self.model.device
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
            for idx, input_ids, attention in padded_batches(
                ids, self.batch_size, self.tokenizer.pad_token_id, self.name
            ):
                logits = self.model(
                    input_ids=input_ids.to(device), attention_mask=attention.to(device)
                ).logits
                scores[idx] = logits[:, 0].float().cpu().numpy()
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
    after the rendered generation prompt, as the policy sampled them."""
    from afd.sampling import encode_prompts

    check_pairs(prompts, responses)
    prompt_ids = encode_prompts(tokenizer, prompts, max_prompt_tokens)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    response_ids = [tokenizer(r, add_special_tokens=False)["input_ids"] + eos for r in responses]
    ids = [p + r for p, r in zip(prompt_ids, response_ids)]
    out = np.zeros(len(ids), dtype=np.float64)
    device = model.device
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for idx, input_ids, attention in padded_batches(ids, batch_size, tokenizer.pad_token_id, desc):
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(
                -1, input_ids[:, 1:].to(device).unsqueeze(-1)
            )[..., 0]
            for row, i in enumerate(idx):
                start, end = len(prompt_ids[i]), len(ids[i])
                # Token t is predicted at position t-1.
                out[i] = float(logp[row, start - 1 : end - 1].sum())
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
    "js": lambda z: -np.logaddexp(0.0, -z),  # log D
    "gail": lambda z: np.logaddexp(0.0, z),  # -log(1 - D)
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
