"""Where and in which precision models run: the device, the weights' dtype, and bf16 autocast."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import torch

from afd.config.run import ComputeConfig, Precision

log = logging.getLogger(__name__)


def resolve_device(compute: ComputeConfig) -> torch.device:
    """compute.device as a torch.device; "auto" is cuda when available, else cpu."""
    if compute.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(compute.device)
    except RuntimeError as e:
        raise ValueError(f"compute.device={compute.device!r} is not a torch device ({e})") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"compute.device={compute.device} but CUDA is not available; use auto or cpu")
    return device


def _cuda_bf16(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_dtype(compute: ComputeConfig, device: torch.device) -> torch.dtype:
    """dtype of the loaded weights: bf16 on CUDA with bf16 (auto or bf16), else fp32.

    On CPU the weights stay fp32 even for precision=bf16: bf16 there is autocast (see use_bf16_autocast),
    which keeps fp32 master weights for the optimizer.
    """
    if compute.precision == Precision.fp32:
        return torch.float32
    if compute.precision == Precision.bf16 and device.type == "cuda" and not _cuda_bf16(device):
        raise ValueError("compute.precision=bf16 but this GPU does not support bf16; use auto or fp32")
    return torch.bfloat16 if _cuda_bf16(device) else torch.float32


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX). Without it, oneDNN emulates bf16
    matmuls: measured on an AVX2-only EPYC, a 2048x576x4096 bf16 matmul took 240x the fp32 one, and a
    TRL SFT step 13x longer under bf16 autocast than in fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16_autocast(compute: ComputeConfig, device: torch.device) -> bool:
    """Whether trainers and samplers run under bf16 autocast: precision=auto uses it on a GPU with bf16
    and on a CPU with native bf16 (CPU autocast then trains ~1.5x faster), never on a CPU without."""
    if compute.precision == Precision.fp32:
        return False
    if compute.precision == Precision.bf16:
        if device.type == "cpu" and not cpu_has_bf16():
            log.warning(
                "compute.precision=bf16 on a CPU without native bf16 (no AVX512-BF16 / AMX): bf16 matmuls "
                "are emulated and run many times slower than fp32; precision=auto would use fp32"
            )
        return True
    return cpu_has_bf16() if device.type == "cpu" else _cuda_bf16(device)
