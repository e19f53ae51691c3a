"""Nucleus (top-p) sampling of one token per row, exactly as `generate(do_sample=True, top_k=0)` draws it,
without sorting the whole vocabulary."""

from __future__ import annotations

import torch


def next_token_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The sampling distribution of `generate(do_sample=True, temperature, top_p, top_k=0)`: logits / T,
    then drop the lowest-probability tokens whose cumulative mass is at most 1 - top_p (always keeping the
    most likely one), then softmax. Dense [rows, vocab], from the same nucleus `sample_next_tokens` draws
    from."""
    probs = torch.zeros(logits.shape, dtype=torch.float32, device=logits.device)
    for rows, ids, weights in _nucleus(logits, temperature, top_p):
        probs[rows] = probs[rows].scatter(1, ids, weights / weights.sum(-1, keepdim=True))
    return probs


def sample_next_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None = None,
    uniform: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token per row from `next_token_probs`, by inverse CDF over the row's nucleus: one uniform per
    row (given, or drawn from `generator`), and no sort or multinomial over the whole vocabulary (those
    cost more than a decode step)."""
    if uniform is None:
        uniform = torch.rand(logits.shape[0], generator=generator, device=logits.device)
    tokens = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    for rows, ids, weights in _nucleus(logits, temperature, top_p):
        cdf = weights.cumsum(-1)
        choice = torch.searchsorted(cdf, (uniform[rows] * cdf[:, -1]).unsqueeze(-1), right=True)
        tokens[rows] = ids.gather(1, choice.clamp(max=ids.shape[1] - 1))[:, 0]
    return tokens


# Candidates per row in the first pass; a row whose nucleus is wider is redone with 16x more. SmolLM2 at
# T=1, top_p=0.95 has a median nucleus of ~200 tokens and 99% under 4096.
_NUCLEUS_K = 256


def _nucleus(logits: torch.Tensor, temperature: float, top_p: float):
    """Yield (rows, token ids [r, k], weights [r, k]) covering every row once: each row's top-k tokens in
    descending probability, weighted by probability inside the nucleus and 0 outside.

    transformers' TopPLogitsWarper removes a token when the ascending cumulative mass up to it is at most
    1 - top_p, i.e. keeps it when the mass of the tokens more likely than it is below top_p: a prefix of
    the descending order. Once the top-k mass reaches top_p every later token is out, so k candidates
    decide the row exactly (up to float rounding of the running sums) without a full sort.
    """
    scores = logits.float()
    if temperature != 1.0:
        scores = scores / temperature
    probs = torch.softmax(scores, dim=-1)
    vocab = probs.shape[-1]
    if top_p >= 1.0:
        rows = torch.arange(probs.shape[0], device=probs.device)
        yield rows, torch.arange(vocab, device=probs.device).expand_as(probs), probs
        return
    pending = torch.arange(probs.shape[0], device=probs.device)
    k = min(_NUCLEUS_K, vocab)
    while pending.numel():
        values, ids = probs[pending].topk(k, dim=-1)
        cumulative = values.cumsum(-1)
        weights = values * ((cumulative - values) < top_p)
        decided = (cumulative[:, -1] >= top_p) | (k == vocab)
        if bool(decided.any()):
            yield pending[decided], ids[decided], weights[decided]
        pending = pending[~decided]
        k = min(k * 16, vocab)
