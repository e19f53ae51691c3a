"""Split assignment shared by all sources: units in an order fixed by split_seed fill test, align, then train.

Filling in one fixed order makes the result independent of where a lazy source (chitchat) stops reading,
and a smaller size gives a prefix of the split a larger one gives.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterable, Optional, Sequence

SPLITS = ("train", "align", "test")
"""The splits load_splits returns, in DatasetDict order."""

Example = dict[str, Any]
Pool = tuple[Iterable[Example], Sequence[str]]
"""Examples in their seeded order, and the splits they fill, in filling order."""


def seeded_order(keys: Iterable[str], seed: int | str) -> list[str]:
    """A permutation of `keys` fixed by `seed`, and the same for each key whatever else is in the list."""
    return sorted(keys, key=lambda k: hashlib.sha1(f"{seed}:{k}".encode()).digest())


def first_per_group(examples: Iterable[Example], seed: int) -> tuple[list[Example], int]:
    """The first example of each group (in input order), groups in seeded order; and how many were dropped."""
    first: dict[str, Example] = {}
    total = 0
    for ex in examples:
        total += 1
        first.setdefault(ex["group"], ex)
    return [first[g] for g in seeded_order(first, seed)], total - len(first)


def fill_splits(
    pools: Sequence[Pool],
    sizes: dict[str, int],
    transform: Optional[Callable[[Example], Optional[Example]]] = None,
) -> dict[str, list[Example]]:
    """Fill each pool's splits in order up to `sizes`, skipping any example whose prompt_id or group is
    already taken, so no prompt and no group lands in two splits. `transform` may replace an example or
    drop it (None); it only sees examples that could still be used."""
    out: dict[str, list[Example]] = {name: [] for name in SPLITS}
    taken_prompts: set[str] = set()
    taken_groups: set[str] = set()
    for examples, names in pools:
        pending = [name for name in names if sizes[name] > len(out[name])]
        if not pending:
            continue
        for ex in examples:
            if ex["prompt_id"] in taken_prompts or ex["group"] in taken_groups:
                continue
            if transform is not None:
                ex = transform(ex)
                if ex is None:
                    continue
            out[pending[0]].append(ex)
            taken_prompts.add(ex["prompt_id"])
            taken_groups.add(ex["group"])
            if len(out[pending[0]]) >= sizes[pending[0]]:
                pending.pop(0)
                if not pending:
                    break
        # A lazy source (a generator) logs what it read when closed; close it now, not at garbage collection.
        close = getattr(examples, "close", None)
        if close is not None:
            close()
    return out
