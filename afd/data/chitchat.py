"""Embedded default data: real human-human chats from the `chitchat-dataset` package. Prompt = the previous
`context_turns` turns (the replier is "assistant"); demonstration = the next human turn, kept only if it is
upbeat (VADER compound >= min_demo_score) and 2-60 words long; at most one example per conversation.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any, Iterator

from afd.config.run import DatasetConfig
from afd.data.schema import DataError, make_example, prompt_problem
from afd.data.splits import Example, Pool, seeded_order

logger = logging.getLogger(__name__)

# One-word replies ("ok", "lol") say nothing about the replier's style, and past ~60 words a reply is a
# monologue that the default 48 new tokens of sampling cannot imitate.
MIN_WORDS, MAX_WORDS = 2, 60

# Conversations whose candidates go into one vader_compound call: it builds an analyzer (~17 ms) per call.
_BLOCK = 512
# Candidates scored per conversation in the first round, doubled each round for those still undecided.
_FIRST_ROUND = 4


def dataset_file() -> Path:
    """dataset.json of the installed package, found without importing it."""
    spec = importlib.util.find_spec("chitchat_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "dataset.source=chitchat_upbeat needs the chitchat-dataset package: "
            "pip install chitchat-dataset==0.9.0"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset.json"
    if not path.is_file():
        raise DataError(f"{path}: file not found (reinstall chitchat-dataset==0.9.0)")
    return path


def pools(cfg: DatasetConfig) -> list[Pool]:
    if cfg.context_turns < 1:
        raise DataError(f"dataset.context_turns={cfg.context_turns}: must be at least 1")
    path = dataset_file()
    with open(path, encoding="utf-8") as f:
        chats = json.load(f)
    return [(_examples(chats, cfg), ("test", "align", "train"))]


def candidates(chat: dict[str, Any], context_turns: int) -> list[tuple[int, list[dict[str, str]], str]]:
    """(turn index, prompt, reply) for every usable reply of one conversation, before the upbeat filter."""
    turns = []
    for turn in chat["messages"]:
        senders = {m["sender"] for m in turn}
        text = "\n".join(m["text"].strip() for m in turn if m["text"].strip())
        # A turn is one sender's consecutive messages; a mixed one would make the roles ambiguous.
        turns.append((senders.pop() if len(senders) == 1 else None, text))
    out = []
    for t in range(context_turns, len(turns)):
        replier, demonstration = turns[t]
        context = turns[t - context_turns : t]
        if replier is None or any(sender is None for sender, _ in context):
            continue
        if not MIN_WORDS <= len(demonstration.split()) <= MAX_WORDS:
            continue
        prompt = [{"role": "assistant" if s == replier else "user", "content": text} for s, text in context]
        alternating = all(a["role"] != b["role"] for a, b in zip(prompt, prompt[1:], strict=False))
        if alternating and prompt_problem(prompt) is None:
            out.append((t, prompt, demonstration))
    return out


def _examples(chats: dict[str, Any], cfg: DatasetConfig) -> Iterator[Example]:
    """Conversations in seeded order, each giving its first upbeat candidate in a seeded order of its
    candidates (a uniform pick among the upbeat ones). Lazy: the caller stops once the splits are full,
    and since blocks only batch the scoring, the sequence does not depend on _BLOCK."""
    from afd.rewards.golden import vader_compound

    order = seeded_order(chats, cfg.split_seed)
    stats = {"conversations": 0, "scored": 0, "passed": 0, "kept": 0}
    try:
        for start in range(0, len(order), _BLOCK):
            block = order[start : start + _BLOCK]
            queues = {}
            for chat_id in block:
                found = {
                    str(t): (prompt, demo)
                    for t, prompt, demo in candidates(chats[chat_id], cfg.context_turns)
                }
                queues[chat_id] = [found[t] for t in seeded_order(found, f"{cfg.split_seed}:{chat_id}")]
            picked: dict[str, tuple[list[dict[str, str]], str]] = {}
            undecided = [c for c in block if queues[c]]
            width = _FIRST_ROUND
            offset = 0
            while undecided:
                batch = [(c, cand) for c in undecided for cand in queues[c][offset : offset + width]]
                scores = vader_compound([demo for _, (_, demo) in batch])
                stats["scored"] += len(batch)
                for (chat_id, cand), score in zip(batch, scores, strict=True):
                    if score >= cfg.min_demo_score:
                        stats["passed"] += 1
                        picked.setdefault(chat_id, cand)
                offset += width
                width *= 2
                undecided = [c for c in undecided if c not in picked and len(queues[c]) > offset]
            for chat_id in block:
                stats["conversations"] += 1
                if chat_id in picked:
                    stats["kept"] += 1
                    prompt, demo = picked[chat_id]
                    yield make_example(prompt, demo, group=chat_id)
    finally:
        logger.info(
            "chitchat: read %d of %d conversations; %d of %d scored replies were upbeat (>= %s); %d kept",
            stats["conversations"],
            len(order),
            stats["passed"],
            stats["scored"],
            cfg.min_demo_score,
            stats["kept"],
        )
