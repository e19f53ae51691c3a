"""afd against the plain baselines, side by side in one run: `python -m benchmarks.run` (see run.py)."""

import os

# Set before any benchmark imports transformers or tqdm: nothing may touch the network, and progress
# bars would bury the table (measured calls print one-line summaries instead).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TQDM_DISABLE", "1")
