"""The KV cache of shared-prefix decoding: prompts encoded once (prefill), their cache expanded to each
sample's row with room for the new tokens, and bf16 weight copies for autocast decode steps."""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from transformers.cache_utils import Cache, DynamicLayer
from transformers.pytorch_utils import Conv1D


def left_padded(prompts: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) [prompts, longest]: each prompt right-aligned, so that every row's
    next token goes in the same column, as decoder-only generation needs."""
    rows = [torch.tensor(p, dtype=torch.long) for p in prompts]
    input_ids = pad_sequence(rows, batch_first=True, padding_value=pad_token_id, padding_side="left")
    mask = pad_sequence(
        [torch.ones_like(r) for r in rows], batch_first=True, padding_value=0, padding_side="left"
    )
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
