"""Sampling responses from a policy with the chat template: Best-of-N pools, evaluation samples and
reward-model training samples.

By default each prompt is encoded once and its n samples are decoded from the shared prefix (the prompt's
KV cache expanded n times), finished samples leave the batch at their EOS; `sampling.shared_prefix=false`
falls back to plain batched `generate`. Both draw each token from softmax(logits / T) after nucleus (top-p)
filtering, top-k off, exactly as `generate(do_sample=True, top_k=0)` does.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache, DynamicLayer
from transformers.pytorch_utils import Conv1D

from afd.config import SamplingConfig

log = logging.getLogger(__name__)

# GPT-2-style models rendered with the HH template continue the dialogue on their own.
STOP_STRINGS = ("\n\nHuman:", "\n\nAssistant:")

# pick(logits [rows, vocab] float32, sample ids [rows]) -> next token ids [rows]
Picker = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
        log.warning(
            "%d of %d prompts are longer than sampling.max_prompt_tokens=%d: they keep their last %d "
            "tokens (the latest turns)",
            cut,
            len(ids),
            max_prompt_tokens,
            max_prompt_tokens,
        )
    return [x[-max_prompt_tokens:] for x in ids]


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
    (included) or after `cfg.max_new_tokens` tokens. The same seed and config give the same samples."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    was_training = model.training
    model.eval()
    try:
        if cfg.shared_prefix:
            generator = torch.Generator(device=model.device).manual_seed(seed)

            def pick(logits: torch.Tensor, sample_ids: torch.Tensor) -> torch.Tensor:
                return sample_next_tokens(logits, cfg.temperature, cfg.top_p, generator)

            return _sample_shared_prefix(
                model, prompt_ids, n, cfg, eos_token_id, pad_token_id, bf16, desc, pick
            )
        return _sample_generate(model, prompt_ids, n, cfg, seed, eos_token_id, pad_token_id, bf16, desc)
    finally:
        model.train(was_training)


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
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One token per row from `next_token_probs`, by inverse CDF over the row's nucleus: one uniform per
    row, and no sort or multinomial over the whole vocabulary (those cost more than a decode step)."""
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


def left_padded(prompts: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) [prompts, longest]: each prompt right-aligned, so that every row's
    next token goes in the same column, as decoder-only generation needs."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        input_ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p) :] = 1
    return input_ids, mask


def prefill(model, prompts: Sequence[Sequence[int]], pad_token_id: int, lm_logits: bool = True):
    """Encode distinct prompts once, in one left-padded forward: (KV cache, attention mask [prompts, width],
    the last position's logits as float32, or None with lm_logits=False, which runs only the backbone of
    e.g. a sequence classifier)."""
    device = model.device
    input_ids, mask = (t.to(device) for t in left_padded(prompts, pad_token_id))
    # Positions count real tokens only, as generate does for left padding.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    if not lm_logits:
        out = model.base_model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True
        )
        return out.past_key_values, mask, None
    out = model(
        input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
    )
    return out.past_key_values, mask, out.logits[:, -1].float()


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
    out: list[list[list[int]]] = [[[] for _ in range(n)] for _ in prompt_ids]
    device = model.device
    bar = tqdm(total=len(prompt_ids) * n, desc=desc, unit="seq")
    with autocast_weight_copies(model, bf16), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for group in _plan_groups([len(p) for p in prompt_ids], n, cfg.batch_size):
            prefix, mask, logits = prefill(model, [prompt_ids[i] for i in group], pad_token_id)
            # Rows: (prompt within the group, sample index); more than batch_size rows only for one prompt.
            rows = [(g, k) for g in range(len(group)) for k in range(n)]
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
                    out[group[g]][k] = toks
                bar.update(len(chunk))
    bar.close()
    return out


@contextlib.contextmanager
def autocast_weight_copies(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Inside the block, linear layers hold bf16 copies of their fp32 weights (`enabled`: bf16 autocast).

    Autocast re-casts every fp32 weight on every forward; for one-token decode steps that costs more than the
    matmuls. It would feed the matmuls these same bf16 values, so the numbers do not change. The fp32
    weights (the optimizer's master copy, and embeddings tied to the output layer) come back untouched.
    """
    swapped: list[tuple[nn.Module, str, nn.Parameter]] = []
    if enabled:
        for module in model.modules():
            if not isinstance(module, (nn.Linear, Conv1D)):
                continue
            for name in ("weight", "bias"):
                param = getattr(module, name, None)
                if isinstance(param, nn.Parameter) and param.dtype == torch.float32:
                    swapped.append((module, name, param))
                    setattr(
                        module, name, nn.Parameter(param.detach().to(torch.bfloat16), requires_grad=False)
                    )
    try:
        yield
    finally:
        for module, name, param in swapped:
            setattr(module, name, param)


class _PreallocatedLayer(DynamicLayer):
    """A full-attention KV layer with room for the new tokens: a decode step writes in place, where
    DynamicLayer concatenates (copying the whole cache, every layer, every step)."""

    def __init__(
        self, keys: torch.Tensor, values: torch.Tensor, rows: torch.Tensor, room: int, dtype: torch.dtype
    ):
        """Row r starts as row rows[r] of the prefix keys and values."""
        super().__init__()
        _, heads, length, _ = keys.shape
        self._k = keys.new_empty((len(rows), heads, length + room, keys.shape[-1]), dtype=dtype)
        self._v = values.new_empty((len(rows), heads, length + room, values.shape[-1]), dtype=dtype)
        self.length = length
        self._gather(keys, rows, self._k)
        self._gather(values, rows, self._v)
        self.dtype, self.device, self.is_initialized = dtype, keys.device, True
        self._set_length(length)

    def _gather(self, source: torch.Tensor, rows: torch.Tensor, buffer: torch.Tensor) -> None:
        filled, source = buffer[:, :, : self.length], source[:, :, : self.length]
        if source.dtype == buffer.dtype:
            torch.index_select(source, 0, rows, out=filled)
        else:
            filled.copy_(source[rows])

    def _set_length(self, length: int) -> None:
        self.length = length
        self.keys, self.values = self._k[:, :, :length], self._v[:, :, :length]

    def update(self, key_states, value_states, *args, **kwargs):
        new = key_states.shape[-2]
        self._k[:, :, self.length : self.length + new] = key_states
        self._v[:, :, self.length : self.length + new] = value_states
        self._set_length(self.length + new)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        # Copy only the filled part; the room left for new tokens needs no copying.
        self._k, self._v = self._select(self._k, indices), self._select(self._v, indices)
        self._set_length(self.length)

    def _select(self, buffer: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        out = buffer.new_empty((len(indices), *buffer.shape[1:]))
        self._gather(buffer, indices, out)
        return out

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._k, self._v = self._k.repeat_interleave(repeats, 0), self._v.repeat_interleave(repeats, 0)
        self._set_length(self.length)


def expand_cache(prefix: Cache, rows: torch.Tensor, room: int) -> Cache:
    """A cache whose row r holds prefix row rows[r], with room for `room` more tokens, leaving `prefix`
    intact (for the next chunk of the same prompts).

    Under autocast the keys and values are stored in the autocast dtype: attention casts them to it before
    every product anyway, so the numbers are the same and each step skips casting the whole cache.
    """
    if all(type(layer) is DynamicLayer for layer in prefix.layers):
        device = prefix.layers[0].keys.device
        autocast = torch.is_autocast_enabled(device.type)
        dtype = torch.get_autocast_dtype(device.type) if autocast else None
        return Cache(
            layers=[
                _PreallocatedLayer(layer.keys, layer.values, rows, room, dtype or layer.keys.dtype)
                for layer in prefix.layers
            ]
        )
    # Sliding-window, linear-attention or shared-KV layers: transformers' own (concatenating) layers.
    cache = copy.deepcopy(prefix)
    cache.batch_select_indices(rows)
    return cache


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
        tokens = pick(logits[live], sample_ids[row_of[live]])
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
    """The plain path: every (prompt, sample) pair is its own left-padded row of `generate`, so a prompt
    is encoded n times."""
    jobs = [(i, ids) for i, ids in enumerate(prompt_ids) for _ in range(n)]
    # Similar lengths in one batch waste less compute on padding.
    order = sorted(range(len(jobs)), key=lambda j: len(jobs[j][1]))
    out: list[list[list[int]]] = [[] for _ in prompt_ids]
    device = model.device
    batch_seeds = torch.Generator().manual_seed(seed)
    bar = tqdm(total=len(jobs), desc=desc, unit="seq")
    for start in range(0, len(order), cfg.batch_size):
        batch = [jobs[j] for j in order[start : start + cfg.batch_size]]
        input_ids, attention = left_padded([ids for _, ids in batch], pad_token_id)
        width = input_ids.shape[1]
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
                pad_token_id=pad_token_id,
                eos_token_id=eos_token_id,
            )
        for (i, _), row in zip(batch, generated[:, width:].tolist()):
            out[i].append(cut_at_eos(row, eos_token_id))
        bar.update(len(batch))
    bar.close()
    return out


def cut_at_eos(row: list[int], eos_token_id: int | None) -> list[int]:
    """generate pads a finished row after its EOS; keep the tokens up to and including the EOS."""
    if eos_token_id is not None and eos_token_id in row:
        return row[: row.index(eos_token_id) + 1]
    return row
