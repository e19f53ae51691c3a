"""The one example format every source is turned into, and the row checks all sources share.

An example is {prompt_id, prompt (chat messages ending with a user turn), demonstration, chosen, rejected,
group}; bad input raises DataError naming the file, the 1-based line and the field.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from pathlib import Path
from typing import Any, Iterator, Optional

from datasets import Features, List, Value

from afd.runtime.errors import UserError

ROLES = ("system", "user", "assistant")

# Declared, not inferred, so that all-None chosen/rejected columns and empty splits keep their types.
FEATURES = Features(
    {
        "prompt_id": Value("string"),
        "prompt": List({"role": Value("string"), "content": Value("string")}),
        "demonstration": Value("string"),
        "chosen": Value("string"),
        "rejected": Value("string"),
        "group": Value("string"),
    }
)

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


class DataError(UserError):
    """Bad dataset input; the message names the file and line and/or the config key or field."""


def prompt_id(messages: list[dict[str, str]]) -> str:
    """sha1 (first 16 hex digits) of the canonical JSON of the prompt messages."""
    canonical = json.dumps(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:16]


def make_example(
    prompt: list[dict[str, str]],
    demonstration: str,
    *,
    chosen: Optional[str] = None,
    rejected: Optional[str] = None,
    group: Optional[str] = None,
) -> dict[str, Any]:
    """An example in the internal format; `group` (the unit of the split) defaults to the prompt_id."""
    pid = prompt_id(prompt)
    return {
        "prompt_id": pid,
        "prompt": prompt,
        "demonstration": demonstration,
        "chosen": chosen,
        "rejected": rejected,
        "group": group if group is not None else pid,
    }


def is_hh_text(text: str) -> bool:
    """Whether a string is an Anthropic HH dialogue ("\\n\\nHuman: ...\\n\\nAssistant: ...")."""
    return "\n\nHuman:" in text or (text.lstrip().startswith("Human:") and "\n\nAssistant:" in text)


def hh_messages(text: str) -> list[dict[str, str]]:
    """Chat messages of an HH dialogue; a trailing empty "Assistant:" (the cue ending an HH prompt) is
    dropped. Raises ValueError (with the reason) when the text is not an HH dialogue."""
    if not text.startswith("\n\n"):
        # Some copies of HH text have been .strip()ped.
        text = "\n\n" + text.lstrip()
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[1] != "Human" or parts[0].strip():
        raise ValueError('HH text must start with "\\n\\nHuman:"')
    messages: list[dict[str, str]] = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role, content = _HH_ROLE[speaker], content.strip()
        if messages and messages[-1]["role"] == role:
            # A few HH dialogues hold two turns of one speaker in a row; merging keeps roles alternating,
            # which some chat templates (Gemma's) require.
            messages[-1]["content"] = f"{messages[-1]['content']}\n\n{content}".strip()
        else:
            messages.append({"role": role, "content": content})
    if messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages


def prompt_problem(messages: list[dict[str, str]]) -> Optional[str]:
    """Why a list of messages is not a valid prompt, or None when it is."""
    if not messages:
        return "has no messages"
    for i, m in enumerate(messages):
        if m["role"] not in ROLES:
            return f"message {i + 1} has role {m['role']!r}; roles are {', '.join(ROLES)}"
        if m["role"] == "system" and i > 0:
            return f"message {i + 1} is a system message; only the first message may be one"
        if not m["content"]:
            return f"message {i + 1} ({m['role']}) is empty"
    if messages[-1]["role"] != "user":
        return f"must end with a user message, not {messages[-1]['role']!r}"
    return None


def parse_prompt(row: dict[str, Any], where: str) -> list[dict[str, str]]:
    """The "prompt" field of a row as chat messages: a plain string is one user message, an HH string is
    parsed as HH, a list must hold {"role", "content"} messages ending with a user message."""
    value = row.get("prompt")
    field = f'{where}: field "prompt"'
    if value is None:
        raise DataError(f"{field} is missing")
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{field} is empty")
        if is_hh_text(value):
            try:
                messages = hh_messages(value)
            except ValueError as e:
                raise DataError(f"{field} looks like HH text but does not parse: {e}") from None
        else:
            messages = [{"role": "user", "content": value.strip()}]
    elif isinstance(value, list):
        messages = []
        for i, m in enumerate(value):
            if not (
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            ):
                raise DataError(
                    f'{field}: message {i + 1} must be {{"role": str, "content": str}}, got {m!r}'
                )
            messages.append({"role": m["role"], "content": m["content"].strip()})
    else:
        raise DataError(f"{field} must be a string or a list of messages, got {type(value).__name__}")
    problem = prompt_problem(messages)
    if problem is not None:
        raise DataError(f"{field} {problem}")
    return messages


def text_field(row: dict[str, Any], field: str, where: str, required: bool = True) -> Optional[str]:
    """A non-empty string field, stripped; an optional one may be absent or null (-> None)."""
    value = row.get(field)
    if value is None:
        if required:
            raise DataError(f'{where}: field "{field}" is missing')
        return None
    if not isinstance(value, str):
        raise DataError(f'{where}: field "{field}" must be a string, got {type(value).__name__}')
    if not value.strip():
        raise DataError(f'{where}: field "{field}" is empty')
    return value.strip()


def read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) for each non-blank line of a JSON-lines file (gzip if the name ends in .gz);
    `where` is "<path>, line <n>" for messages."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        # Binary lines, decoded one by one, so that a decoding error names its true line.
        with opener(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                where = f"{path}, line {n}"
                try:
                    line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{where}: invalid JSON ({e.msg}, column {e.colno})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
                yield where, row
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable gzip file ({e})") from None
