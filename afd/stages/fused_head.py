"""TRL's fused LM head (SFT, DPO, GRPO, RLOO: per-token log-probabilities without the full logits), sized
for a CPU while a stage trains.

TRL 1.16 tiles the projection for GPUs: 4096 tokens x 32768 vocabulary columns, 512 MB per fp32 tile, and
its torch fallback for devices without Triton makes several temporaries of that size per tile. It also
projects every position on such devices, the prompt's too, where only the completion's labels count.
Measured on SmolLM2's head (2,048 tokens, 49k vocabulary, forward and backward, 2-core CPU): 10.5 s and
+1.95 GB with TRL's tiles, 5.3 s and no measurable extra memory with 512 x 2048 tiles.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import trl.kernels.chunked_logprob as kernel
import trl.trainer.utils as trl_utils

CPU_TOKENS_PER_TILE = 512
CPU_VOCAB_PER_TILE = 2048


@contextlib.contextmanager
def fused_head_for(device: torch.device) -> Iterator[None]:
    """On a CPU: small tiles, and only the positions that have a label are projected (TRL's own path
    for Triton devices; the kernel itself stays the torch one). Elsewhere: TRL's settings unchanged.
    Restored on exit, so code outside a training stage sees TRL as installed."""
    if device.type != "cpu":
        yield
        return
    saved = (kernel.TOKEN_CHUNK_SIZE, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE, trl_utils._use_triton)
    kernel.TOKEN_CHUNK_SIZE = CPU_TOKENS_PER_TILE
    trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = CPU_VOCAB_PER_TILE
    # In trl.trainer.utils this name only chooses between projecting the labelled positions ("compact")
    # and projecting all of them; the kernel module keeps its own copy to choose Triton or torch.
    trl_utils._use_triton = lambda device: True
    try:
        yield
    finally:
        kernel.TOKEN_CHUNK_SIZE, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE, trl_utils._use_triton = saved
