"""A user's own JSON-lines file at dataset.path: one {"prompt", "demonstration", "chosen"?, "rejected"?}
object per line; the prompt is a string (plain, or HH text) or a list of chat messages.
"""

from __future__ import annotations

import logging
from pathlib import Path

from afd.config.run import DatasetConfig
from afd.data.schema import DataError, make_example, parse_prompt, read_jsonl, text_field
from afd.data.splits import Pool, first_per_group

logger = logging.getLogger(__name__)


def pools(cfg: DatasetConfig) -> list[Pool]:
    if cfg.path is None:
        raise DataError("dataset.path is not set: the jsonl source reads dataset.path=<file.jsonl>")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(f"dataset.path={cfg.path}: file not found")
    examples = []
    for where, row in read_jsonl(path):
        prompt = parse_prompt(row, where)
        demonstration = text_field(row, "demonstration", where)
        chosen = text_field(row, "chosen", where, required=False)
        rejected = text_field(row, "rejected", where, required=False)
        if (chosen is None) != (rejected is None):
            given, absent = ("chosen", "rejected") if chosen is not None else ("rejected", "chosen")
            raise DataError(f'{where}: field "{given}" is given without "{absent}"; give both or neither')
        examples.append(make_example(prompt, demonstration, chosen=chosen, rejected=rejected))
    if not examples:
        raise DataError(f"dataset.path={cfg.path}: the file holds no rows")
    ordered, duplicates = first_per_group(examples, cfg.split_seed)
    if duplicates:
        logger.info(
            "%s: %d rows repeat an earlier prompt; the first row of each prompt is kept", path, duplicates
        )
    return [(ordered, ("test", "align", "train"))]
