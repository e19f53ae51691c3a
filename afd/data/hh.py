"""Anthropic HH-RLHF (harmless-base, helpful-base) from local files or the hub, cut as in the paper
(section 4): prompt = the text up to and including the last "\\n\\nAssistant:"; response = the rest, cut
at a next "\\n\\nHuman:". Demonstration = the chosen response unless dataset.demonstrations_path is set.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

from afd.config.run import DatasetConfig, DatasetSource
from afd.data.schema import DataError, hh_messages, make_example, prompt_problem, read_jsonl
from afd.data.splits import Example, Pool, first_per_group

logger = logging.getLogger(__name__)

HUB_ID = "Anthropic/hh-rlhf"
SUBSETS = {DatasetSource.hh_harmless: "harmless-base", DatasetSource.hh_helpful: "helpful-base"}
"""The hub data_dir of each HH source, used when dataset.subset is not set."""

_ASSISTANT = "\n\nAssistant:"
_PATH_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")
_TRUE = {"1", "true", "yes", "on"}
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_HINT = (
    "download {subset}/train.jsonl.gz and {subset}/test.jsonl.gz of the hub dataset Anthropic/hh-rlhf "
    "where there is network, and set dataset.path=<dir holding them>"
)

Rows = Iterable[tuple[str, dict[str, Any]]]


def split_dialogue(text: str) -> tuple[str, str]:
    """(prompt text ending with "\\n\\nAssistant:", response); ValueError when there is no Assistant turn."""
    cut = text.rfind(_ASSISTANT)
    if cut < 0:
        raise ValueError('has no "\\n\\nAssistant:" turn')
    cut += len(_ASSISTANT)
    return text[:cut], text[cut:].split("\n\nHuman:", 1)[0].strip()


def parse_rows(rows: Rows, skipped: Counter, first_skip: dict[str, str]) -> list[Example]:
    """HH rows {"chosen", "rejected"} -> examples (demonstration = chosen). A row that is not HH text
    raises DataError; a well-formed row unusable as an example is skipped and counted in `skipped`."""
    examples = []
    for where, row in rows:
        parsed = {}
        for field in ("chosen", "rejected"):
            text = row.get(field)
            if not isinstance(text, str):
                problem = "is missing" if text is None else f"must be a string, got {type(text).__name__}"
                raise DataError(f'{where}: field "{field}" {problem}')
            try:
                prompt_text, response = split_dialogue(text)
                parsed[field] = (hh_messages(prompt_text), response)
            except ValueError as e:
                raise DataError(f'{where}: field "{field}" is not HH text: {e}') from None
        (prompt, chosen), (other_prompt, rejected) = parsed["chosen"], parsed["rejected"]
        # The real HH data is third-party and not editable by the user: rows that parse but cannot make an
        # example are skipped and counted instead of failing the whole load.
        reason = None
        if prompt != other_prompt:
            reason = "chosen and rejected prompts differ"
        elif prompt_problem(prompt) is not None:
            reason = f"prompt {prompt_problem(prompt)}"
        elif not chosen:
            reason = "chosen response is empty"
        if reason is not None:
            skipped[reason] += 1
            first_skip.setdefault(reason, where)
            continue
        examples.append(make_example(prompt, chosen, chosen=chosen, rejected=rejected))
    return examples


def pools(cfg: DatasetConfig) -> list[Pool]:
    rows = _rows(cfg)
    skipped: Counter = Counter()
    first_skip: dict[str, str] = {}
    test = parse_rows(rows["test"], skipped, first_skip)
    parsed_train = parse_rows(rows["train"], skipped, first_skip)
    for reason, count in skipped.items():
        logger.warning("HH: skipped %d rows: %s (first: %s)", count, reason, first_skip[reason])
    # Leakage guard: a prompt anywhere in the test file, not only in the sampled test split.
    test_prompts = {ex["prompt_id"] for ex in test}
    kept = [ex for ex in parsed_train if ex["prompt_id"] not in test_prompts]
    test, test_duplicates = first_per_group(test, cfg.split_seed)
    train, train_duplicates = first_per_group(kept, cfg.split_seed)
    logger.info(
        "HH: %d train prompts (%d rows dropped as repeats, %d as test prompts), %d test prompts (%d repeats)",
        len(train),
        train_duplicates,
        len(parsed_train) - len(kept),
        len(test),
        test_duplicates,
    )
    return [(test, ("test",)), (train, ("align", "train"))]


def _rows(cfg: DatasetConfig) -> dict[str, Rows]:
    subset = cfg.subset or SUBSETS[DatasetSource(cfg.source)]
    path = cfg.path
    if path is not None and _is_local_path(path):
        return _local_rows(Path(path).expanduser(), subset, path)
    return _hub_rows(path or HUB_ID, subset, path)


def _is_local_path(path: str) -> bool:
    """A hub id is "owner/name"; anything else, or anything that exists on disk, is a local path."""
    return (
        path.startswith(_PATH_PREFIXES)
        or os.path.exists(os.path.expanduser(path))
        or path.count("/") != 1
        or path.endswith((".jsonl", ".gz", ".json"))
    )


def _local_rows(root: Path, subset: str, given: str) -> dict[str, Rows]:
    if not root.exists():
        raise DataError(f"dataset.path={given}: directory not found")
    if not root.is_dir():
        raise DataError(
            f"dataset.path={given} is a file; HH reads a directory holding "
            "train.jsonl[.gz] and test.jsonl[.gz]"
        )
    # Also accept the root of a copy of the hub repo, with one folder per subset.
    directory = root
    if (
        not any((root / name).is_file() for name in _names("train") + _names("test"))
        and (root / subset).is_dir()
    ):
        directory = root / subset
    files = {}
    for split in ("train", "test"):
        found = [directory / name for name in _names(split) if (directory / name).is_file()]
        if not found:
            raise DataError(f"dataset.path={given}: no {split}.jsonl or {split}.jsonl.gz in {directory}")
        files[split] = found[0]
    return {split: read_jsonl(file) for split, file in files.items()}


def _names(split: str) -> list[str]:
    return [f"{split}.jsonl", f"{split}.jsonl.gz"]


def _hub_rows(hub_id: str, subset: str, given: str | None) -> dict[str, Rows]:
    import datasets

    what = f"dataset.path={given}:" if given is not None else "dataset.path is not set and"
    hint = _HINT.format(subset=subset)
    offline_vars = [v for v in _OFFLINE_VARS if os.environ.get(v, "").lower() in _TRUE]
    # The datasets client reads the offline switches once, at import: set later, it would still go online.
    client_offline = bool(datasets.config.HF_HUB_OFFLINE)
    if offline_vars and not client_offline:
        raise DataError(
            f"{what} the hub dataset {hub_id} ({subset}) cannot be reached offline "
            f"({' and '.join(offline_vars)} set); {hint}"
        )
    if not client_offline:
        from afd.models.hub import DEFAULT_ENDPOINT, probe_endpoint

        endpoint = os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
        # Without this probe the datasets client retries an unreachable hub for ~46 s before failing.
        problem = probe_endpoint(endpoint)
        if problem is not None:
            raise DataError(
                f"{what} the hub dataset {hub_id} ({subset}) cannot be reached ({problem}); {hint}"
            )
    try:
        # Offline, this only looks in the datasets cache, which answers at once.
        loaded = datasets.load_dataset(hub_id, data_dir=subset)
    except Exception as e:
        reason = (
            f"cannot be reached offline ({type(e).__name__}) and is not in the datasets cache"
            if client_offline
            else f"failed to load ({type(e).__name__}: {e})"
        )
        raise DataError(f"{what} the hub dataset {hub_id} ({subset}) {reason}; {hint}") from e
    missing = [split for split in ("train", "test") if split not in loaded]
    if missing:
        raise DataError(f"the hub dataset {hub_id} ({subset}) has no {missing[0]} split")
    return {
        split: _enumerate(loaded[split], f"{hub_id} ({subset}) {split} split") for split in ("train", "test")
    }


def _enumerate(rows: Iterable[dict[str, Any]], name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for n, row in enumerate(rows, 1):
        yield f"{name}, row {n}", row
