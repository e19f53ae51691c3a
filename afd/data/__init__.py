"""Prompts and demonstrations: every DatasetSource turned into one DatasetDict of train (SFT demonstrations),
align (the prompts every stage after SFT learns on) and test (evaluation / Best-of-N prompts), in one format.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Callable

from datasets import Dataset, DatasetDict

from afd.config.run import DatasetConfig, DatasetSource
from afd.data import chitchat, hh, jsonl
from afd.data.demonstrations import DemonstrationOverride
from afd.data.schema import FEATURES, DataError
from afd.data.splits import SPLITS, Pool, fill_splits

__all__ = ["DataError", "cached_splits", "load_splits", "require_examples"]

logger = logging.getLogger(__name__)

BUILDERS: dict[DatasetSource, Callable[[DatasetConfig], list[Pool]]] = {
    DatasetSource.chitchat_upbeat: chitchat.pools,
    DatasetSource.hh_harmless: hh.pools,
    DatasetSource.hh_helpful: hh.pools,
    DatasetSource.jsonl: jsonl.pools,
}
"""The builder of each source: the examples in seeded order and the splits they fill."""


def cached_splits(cfg: DatasetConfig) -> DatasetDict:
    """load_splits, remembered within a process by the config and the size and mtime of the files it
    reads: the jobs of a sweep in one process parse the 40 MB chitchat file once, not once a job."""
    key = (json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str), _source_stamp(cfg))
    if key not in _LOADED:
        if len(_LOADED) >= 4:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = load_splits(cfg)
    return _LOADED[key]


_LOADED: dict[tuple, DatasetDict] = {}


def _source_stamp(cfg: DatasetConfig) -> tuple:
    paths = [cfg.demonstrations_path, cfg.path]
    if DatasetSource(cfg.source) is DatasetSource.chitchat_upbeat:
        paths.append(str(chitchat.dataset_file()))
    stamp = []
    for path in paths:
        if path and os.path.exists(os.path.expanduser(path)):
            root = Path(path).expanduser()
            files = sorted(root.rglob("*")) if root.is_dir() else [root]
            stamp += [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    return tuple(stamp)


def load_splits(cfg: DatasetConfig) -> DatasetDict:
    """DatasetDict with "train", "align" and "test", each with the columns of schema.FEATURES; no prompt
    and no group in two splits; split sizes at most cfg.train_size / align_size / test_size; fixed by
    split_seed."""
    sizes = {"train": cfg.train_size, "align": cfg.align_size, "test": cfg.test_size}
    for name, size in sizes.items():
        if size < 0:
            raise DataError(f"dataset.{name}_size={size}: must be at least 0")
    # The override file is read first: a mistake in it should not wait for a large source to load.
    override = DemonstrationOverride(cfg.demonstrations_path) if cfg.demonstrations_path else None
    pools = BUILDERS[DatasetSource(cfg.source)](cfg)
    splits = fill_splits(pools, sizes, override)
    if override is not None:
        override.finish()
    logger.info(
        "dataset %s: %s",
        cfg.name,
        ", ".join(f"{name} {len(splits[name])}/{sizes[name]}" for name in SPLITS),
    )
    for name in SPLITS:
        if len(splits[name]) < sizes[name]:
            logger.warning(
                "dataset %s: the %s split has %d examples, fewer than dataset.%s_size=%d (source ran out)",
                cfg.name,
                name,
                len(splits[name]),
                name,
                sizes[name],
            )
    # Column-wise: Dataset.from_list([]) drops the declared columns of an empty split.
    return DatasetDict(
        {
            name: Dataset.from_dict(
                {col: [ex[col] for ex in splits[name]] for col in FEATURES}, features=FEATURES
            )
            for name in SPLITS
        }
    )


def require_examples(splits: DatasetDict, cfg: DatasetConfig, *names: str) -> None:
    """Fail now, naming the dataset and the sizes, if a split a pipeline needs came out empty
    (SFT needs demonstrations, evaluation needs prompts), not deep inside a trainer."""
    for name in names:
        if len(splits[name]) == 0:
            raise DataError(
                f"dataset {cfg.name} ({cfg.path or cfg.source.value}): the {name} split is empty; the source "
                f"has too few examples for test_size={cfg.test_size}, align_size={cfg.align_size}, "
                f"train_size={cfg.train_size}"
            )
