"""A5: a model as pairwise judge of the Best-of-N pick, in both orders (prompt, verdict, order swap, ties)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from omegaconf import OmegaConf

import afd.stages.judge as judge_module
from afd.config import to_run_config
from afd.main import run
from afd.objectives.best_of_n import JUDGE_TEMPLATE
from afd.stages.judge import answer_ids, judge_pairs, judge_prompts

from conftest import build_tiny_tokenizer, tiny_overrides

PROMPTS = [[{"role": "user", "content": "hello there"}], [{"role": "user", "content": "what did you do"}]]


def test_the_judge_prompt_shows_the_conversation_and_both_replies_in_their_slots():
    tok = build_tiny_tokenizer()
    (ids,) = judge_prompts(tok, JUDGE_TEMPLATE, PROMPTS[:1], ["i love it"], ["oh no"])
    text = tok.decode(ids)
    assert "user: hello there" in text
    assert text.index("Reply A: i love it") < text.index("Reply B: oh no")
    assert text.endswith("assistant:"), "the judge's next token is its answer"
    a, b = answer_ids(tok)
    assert a != b


@pytest.mark.parametrize(
    "first,second,verdict",
    [
        ([2.0, 2.0], [-2.0, -2.0], "win"),  # prefers the pick in both orders
        ([-2.0, -2.0], [2.0, 2.0], "loss"),
        ([2.0, 2.0], [2.0, 2.0], "tie"),  # always answers A: position bias cancels
        ([0.05, 0.05], [-0.05, -0.05], "tie"),  # within the margin
    ],
)
def test_both_orders_decide_win_tie_or_loss(monkeypatch, first, second, verdict):
    answers = iter([np.array(first), np.array(second)])
    monkeypatch.setattr(judge_module, "prefers_a", lambda *args, **kwargs: next(answers))
    v = judge_pairs(
        None, build_tiny_tokenizer(), JUDGE_TEMPLATE, PROMPTS, ["a", "b"], ["c", "d"], 8, margin=0.1
    )
    assert getattr(v, verdict).tolist() == [1.0, 1.0]
    assert (v.win + v.tie + v.loss).tolist() == [1.0, 1.0]


def test_identical_replies_tie(monkeypatch):
    answers = iter([np.array([3.0, 3.0]), np.array([-3.0, -3.0])])
    monkeypatch.setattr(judge_module, "prefers_a", lambda *args, **kwargs: next(answers))
    v = judge_pairs(None, build_tiny_tokenizer(), JUDGE_TEMPLATE, PROMPTS, ["same", "b"], ["same", "d"], 8)
    assert v.tie.tolist() == [1.0, 0.0] and v.win.tolist() == [0.0, 1.0]


def test_the_judge_runs_end_to_end_on_the_tiny_model(compose, tiny_model_dir, tmp_path):
    cfg = compose(
        [
            *tiny_overrides(tiny_model_dir, tmp_path / "cache"),
            "objective=irl_init_sft",
            "objective/judge=custom",
            f"objective.judge.model.name_or_path={tiny_model_dir}",
            "golden=[harmless]",
            "logger=none",
            f"paths.output_dir={tmp_path / 'out'}",
        ]
    )
    metrics = run(to_run_config(cfg), OmegaConf.to_container(cfg, resolve=True))
    for against in ("sft", "demo", "bt_pref"):
        parts = [metrics[f"judge/{against}/{k}"] for k in ("win", "tie", "loss")]
        assert sum(parts) == pytest.approx(1.0)
        assert metrics[f"judge/{against}/winrate"] == pytest.approx(parts[0] + parts[1] / 2)
    with (tmp_path / "out" / "judge.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {"sft (1 win, 0 tie, -1 loss)", "bt_pref (1 win, 0 tie, -1 loss)"} <= set(
        rows[0]
    )
