"""Sharded sampling: a Best-of-N pool of SmolLM2 sampled by 2 processes x 1 thread (torchrun, gloo, each
rank decoding every other group of prompts) against 1 process x 1 thread, on the same prompts. Both runs
must return the same pool; the row reports the 2-process throughput over the 1-process one."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Row

N_PROMPTS, N = 8, 16


def worker(out_file: str) -> None:
    """Under torchrun: load the model, sample the pool inside `sharded()`, rank 0 writes time and hash."""
    import torch

    from afd.config.run import SamplingConfig
    from afd.generation.sampling import sample_responses
    from afd.runtime import distributed
    from benchmarks.common import chitchat_test_prompts, load_smollm2

    torch.set_num_threads(1)
    distributed.start()
    model, tokenizer = load_smollm2(torch.float32)
    prompts = chitchat_test_prompts(N_PROMPTS, 8)
    distributed.wait_for_everyone()
    start = time.perf_counter()
    with distributed.sharded():
        pool = sample_responses(model, tokenizer, prompts, N, SamplingConfig(), seed=0, desc="pool")
    distributed.wait_for_everyone()
    seconds = time.perf_counter() - start
    if distributed.is_main_process():
        digest = hashlib.sha256(json.dumps(pool).encode()).hexdigest()
        Path(out_file).write_text(json.dumps({"seconds": seconds, "pool": digest}))


def _launch(world: int, out: Path) -> dict:
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    cmd = [torchrun, "--standalone", f"--nproc_per_node={world}", "-m", "benchmarks.sharding", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


def run() -> list[Row]:
    print(
        f"[sharding] {N_PROMPTS} chitchat test prompts x {N} samples, fp32, 1 thread per process", flush=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        one, two = (_launch(w, Path(tmp) / f"world{w}.json") for w in (1, 2))
    same = one["pool"] == two["pool"]
    seqs = N_PROMPTS * N
    return [
        Row(
            "BoN sampling, 2 processes vs 1 (1 thread each)",
            seqs / two["seconds"],
            seqs / one["seconds"],
            "seq/s",
            target=">1.6x, same pool",
            met=same and two["seconds"] * 1.6 < one["seconds"],
            note=f"pools {'identical' if same else 'DIFFER'} (sha256 of the responses)",
        )
    ]


if __name__ == "__main__":
    worker(sys.argv[1])
