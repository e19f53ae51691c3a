"""Run the benchmarks and print one table: `python -m benchmarks.run [--quick] [NAME ...]`.

Each line measures afd and its plain baseline side by side in this run, on the same inputs, after a
warm-up (medians of repeats where the budget allows), in the precision afd picks for this CPU (bf16
only where it is native, else fp32 on both sides). Takes several minutes on a 2-core CPU; run it on an
otherwise idle machine. --quick shrinks every benchmark (a prompt or two, two or three training steps) to
check that it runs; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from benchmarks import bon_curve, bon_sampling, reward_model, scoring, sft, sharding
from benchmarks.common import precision, table

# name: (its run function, the arguments that shrink it for --quick)
BENCHMARKS = {
    "sampling": (bon_sampling.run, {"n_prompts": 1, "context_turns": 1, "new_tokens": 8, "afd_repeats": 1}),
    "scoring": (scoring.run, {"n_prompts": 1, "pool": 4, "context_turns": 1, "repeats": 1}),
    "sft": (sft.run, {"steps": 3, "batch": 2, "runs": 1, "heldout": 2}),
    "reward_model": (reward_model.run, {"steps": 3, "batch": 2, "heldout": 2}),
    "curve": (bon_curve.run, {"pool_sizes": (16, 64), "n_prompts": 8, "repeats": 1}),
    # Its size is fixed inside its torchrun workers: --quick runs it whole.
    "sharding": (sharding.run, {}),
}
# --cpu: sizes for a CPU without native bf16 (fp32 throughout), where plain `generate` at N = 64 on the
# default 8 prompts alone takes about 25 minutes: 3 prompts for sampling, everything else at its default.
CPU_SIZES = {"sampling": {"n_prompts": 3, "afd_repeats": 1}}


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
        f"torch {torch.__version__}, {platform.python_implementation()} {platform.python_version()}; "
        f"afd and the baselines run in {precision().name}"
    )


def quiet() -> None:
    """Only warnings that matter and no progress bars: the output is the table."""
    import datasets
    import transformers
    from tqdm.auto import tqdm

    import afd.generation.sampling
    import afd.generation.scoring

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()

    # TQDM_DISABLE (benchmarks/__init__.py) sets tqdm's default; the batch bars of afd's sampler and
    # scorer pass `disable` themselves.
    def no_bar(*args, **kwargs):
        return tqdm(*args, **{**kwargs, "disable": True})

    for module in (afd.generation.sampling, afd.generation.scoring):
        module.tqdm = no_bar


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "only", nargs="*", help=f"benchmarks to run, from {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that every benchmark runs")
    parser.add_argument("--cpu", action="store_true", help="smaller sampling sizes for an fp32-only CPU")
    args = parser.parse_args(argv)
    unknown = [name for name in args.only if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    quiet()
    start = time.perf_counter()
    rows = []
    for name in args.only or BENCHMARKS:
        fn, quick = BENCHMARKS[name]
        rows += fn(**quick) if args.quick else fn(**(CPU_SIZES.get(name, {}) if args.cpu else {}))
    print()
    print(f"machine: {machine()}")
    if args.quick:
        print("--quick: tiny sizes, to check that the benchmarks run; the numbers mean nothing")
    if args.cpu:
        print(f"--cpu sizes: {CPU_SIZES}")
    print(f"total benchmark time: {time.perf_counter() - start:.0f} s; peak memory: resident set increase")
    print("during the measured calls (sampled every 2 ms)")
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
