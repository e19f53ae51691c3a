"""Demonstrations from a separate file (dataset.demonstrations_path), matched to any source's prompts by
prompt_id: the paper's demonstrations are GPT-4 responses to the HH prompts, not the human "chosen" ones.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from afd.data.schema import DataError, parse_prompt, prompt_id, read_jsonl, text_field
from afd.data.splits import Example

logger = logging.getLogger(__name__)


class DemonstrationOverride:
    """Replaces each example's demonstration by the file's one for the same prompt; an example the file
    has no demonstration for is dropped from every split (SFT needs one, and the RM splits compare
    against the same demonstrator)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise DataError(f"dataset.demonstrations_path={path}: file not found")
        self.demos: dict[str, str] = {}
        first_line: dict[str, str] = {}
        for where, row in read_jsonl(self.path):
            pid = prompt_id(parse_prompt(row, where))
            demo = text_field(row, "demonstration", where)
            if pid in self.demos and self.demos[pid] != demo:
                raise DataError(
                    f"{where}: this prompt already has a different demonstration ({first_line[pid]})"
                )
            self.demos[pid] = demo
            first_line.setdefault(pid, where)
        if not self.demos:
            raise DataError(f"dataset.demonstrations_path={path}: the file holds no rows")
        self.matched = 0
        self.dropped = 0

    def __call__(self, ex: Example) -> Optional[Example]:
        demo = self.demos.get(ex["prompt_id"])
        if demo is None:
            self.dropped += 1
            return None
        self.matched += 1
        return {**ex, "demonstration": demo}

    def finish(self) -> None:
        """Log what matched; raise when nothing did (almost surely prompts written differently)."""
        if self.dropped and not self.matched:
            raise DataError(
                f"dataset.demonstrations_path={self.path}: none of its {len(self.demos)} prompts matches "
                f"a prompt of the dataset ({self.dropped} examples tried); prompts must match exactly "
                '(the same messages, or the same HH text up to the last "\\n\\nAssistant:")'
            )
        if self.dropped:
            logger.info(
                "%s: %d examples have no demonstration in the file and were dropped (%d matched)",
                self.path,
                self.dropped,
                self.matched,
            )
