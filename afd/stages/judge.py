"""A model as pairwise judge (paper ablation A5, the paper's GPT-4-as-judge): the Best-of-N pick against
a pi_SFT sample, against the demonstration and against the Bradley-Terry reward model's pick, each pair
judged in both orders so that the judge's preference for a position cancels.

The judge reads a prompt that shows the conversation and the two responses as A and B and asks which is
better; its verdict is which of the answer tokens "A" and "B" it finds more likely next (no sampling, no
parsing of free text). Across the two orders: the pick wins if the judge prefers it in both, loses if it
prefers the other in both, and ties otherwise (a judge that answers by position ties every pair).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from afd.analysis.stats import mean_ci
from afd.generation.kv_cache import autocast_weight_copies, left_padded


@dataclass
class Verdicts:
    win: np.ndarray
    tie: np.ndarray
    loss: np.ndarray
    """Per prompt, one of them is 1."""

    def metrics(self, prefix: str, level: float) -> dict[str, float]:
        out = {}
        for name, v in (("win", self.win), ("tie", self.tie), ("loss", self.loss)):
            ci = mean_ci(v, level)
            out.update(
                {
                    f"{prefix}/{name}": ci.mean,
                    f"{prefix}/{name}_ci_low": ci.ci_low,
                    f"{prefix}/{name}_ci_high": ci.ci_high,
                }
            )
        rate = mean_ci(self.win + 0.5 * self.tie, level)
        out.update(
            {
                f"{prefix}/winrate": rate.mean,
                f"{prefix}/winrate_ci_low": max(0.0, rate.ci_low),
                f"{prefix}/winrate_ci_high": min(1.0, rate.ci_high),
            }
        )
        return out


def conversation_text(messages: Sequence[dict]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def judge_prompts(tokenizer, template: str, prompts, firsts, seconds) -> list[list[int]]:
    """Token ids of the judge's prompt for each (conversation, reply A, reply B), with its chat template
    and generation prompt: the next token is its answer."""
    ids = []
    for messages, a, b in zip(prompts, firsts, seconds):
        text = template.format(conversation=conversation_text(messages), a=a, b=b)
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        ids.append(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    return ids


def answer_ids(tokenizer) -> tuple[int, int]:
    """The token ids of the answers "A" and "B" (their first token, as the judge would start them)."""
    a, b = (tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in ("A", "B"))
    if a == b:
        raise ValueError("the judge's tokenizer encodes A and B with the same first token")
    return a, b


@torch.inference_mode()
def prefers_a(
    model, tokenizer, prompt_ids: Sequence[Sequence[int]], batch_size: int, bf16: bool = False
) -> np.ndarray:
    """log P(A) - log P(B) of the judge's next token, per prompt."""
    a, b = answer_ids(tokenizer)
    out = np.zeros(len(prompt_ids))
    device = model.device
    with autocast_weight_copies(model, bf16), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(prompt_ids), batch_size):
            chunk = prompt_ids[start : start + batch_size]
            ids, mask = (t.to(device) for t in left_padded(chunk, tokenizer.pad_token_id))
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1
            ).logits[:, -1]
            logp = torch.log_softmax(logits.float(), dim=-1)
            out[start : start + len(chunk)] = (logp[:, a] - logp[:, b]).cpu().numpy()
    return out


def judge_pairs(
    model,
    tokenizer,
    template: str,
    prompts,
    picks,
    opponents,
    batch_size: int,
    margin: float = 0.0,
    bf16: bool = False,
) -> Verdicts:
    """The pick against the opponent on each prompt, judged in both orders."""
    first = prefers_a(
        model, tokenizer, judge_prompts(tokenizer, template, prompts, picks, opponents), batch_size, bf16
    )
    second = prefers_a(
        model, tokenizer, judge_prompts(tokenizer, template, prompts, opponents, picks), batch_size, bf16
    )
    pick_first, pick_second = first > margin, second < -margin
    other_first, other_second = first < -margin, second > margin
    same = np.array([p == o for p, o in zip(picks, opponents)])
    win = (pick_first & pick_second & ~same).astype(float)
    loss = (other_first & other_second & ~same).astype(float)
    return Verdicts(win, 1.0 - win - loss, loss)
