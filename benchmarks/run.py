"""Run every benchmark and print one table: `python -m benchmarks.run [sampling scoring sft curve]`.

Each line measures afd and its plain baseline side by side in this run, on the same inputs, after a
warm-up (medians of repeats where the budget allows). Takes about 7 minutes on a 2-core CPU; run it on
an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from benchmarks import bon_curve, bon_sampling, scoring, sft
from benchmarks.common import table

BENCHMARKS = {"sampling": bon_sampling.run, "scoring": scoring.run, "sft": sft.run, "curve": bon_curve.run}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        flags = ", ".join(f for f in ("avx512_bf16", "amx_bf16") if f in text)
    except OSError:
        pass
    return (
        f"{cpu} ({flags or 'no bf16 flags'}), {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, {platform.python_implementation()} {platform.python_version()}"
    )


def quiet() -> None:
    """Only warnings that matter and no progress bars: the output is the table."""
    import datasets
    import transformers

    import afd.rewards.base

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    afd.rewards.tqdm = lambda iterable, **_: iterable  # its batch bar is switched on explicitly


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "only", nargs="*", help=f"benchmarks to run, from {', '.join(BENCHMARKS)} (default: all)"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.only if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    quiet()
    start = time.perf_counter()
    rows = []
    for name in args.only or BENCHMARKS:
        rows += BENCHMARKS[name]()
    print()
    print(f"machine: {machine()}")
    print(f"total benchmark time: {time.perf_counter() - start:.0f} s; peak memory: resident set increase")
    print("during the measured calls (sampled every 2 ms)")
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
