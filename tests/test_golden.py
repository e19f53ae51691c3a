"""Golden rewards: the embedded scorers rank obvious cases, and the reward-model scorer batches faithfully."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from afd.config.run import GoldenConfig, GoldenKind, RMTextFormat
from afd.models.hub import ModelSourceError
from afd.rewards.classifier import render_hh, render_pair
from afd.rewards.golden import GOLDEN_BUILDERS, Harmless, RewardModelGolden, Upbeat, build_golden
from afd.rewards.reward import Reward

CPU = torch.device("cpu")


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_every_golden_kind_has_a_builder():
    assert set(GOLDEN_BUILDERS) == set(GoldenKind)


def test_upbeat_ranks_happy_above_sad():
    golden = build_golden("upbeat", GoldenConfig(kind=GoldenKind.upbeat), CPU)
    assert isinstance(golden, Upbeat) and isinstance(golden, Reward) and golden.name == "upbeat"
    scores = golden.score(
        [_user("how was your day?")] * 2,
        ["It was wonderful, I love it, such a happy great day!", "Awful. I feel sad, terrible and hopeless."],
    )
    assert scores.dtype == np.float64 and scores.shape == (2,)
    assert scores[0] > 0.5 > -0.5 > scores[1]


def test_harmless_ranks_clean_above_offensive():
    golden = build_golden("harmless", GoldenConfig(kind=GoldenKind.harmless), CPU)
    assert isinstance(golden, Harmless)
    scores = golden.score(
        [_user("what do you think of me?")] * 2,
        ["Thank you for asking, I hope you have a lovely day.", "You are a fucking stupid idiot, shut up."],
    )
    assert scores.dtype == np.float64 and scores.shape == (2,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores[0] > 0.5 > scores[1]
    assert golden.score([], []).shape == (0,)


def test_render_hh():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
    ]
    assert render_hh(messages, " see you") == (
        "\n\nHuman: Be brief.\nhi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant: see you"
    )


def _rm(path, **kw) -> RewardModelGolden:
    cfg = GoldenConfig(kind=GoldenKind.rm, name_or_path=str(path), **kw)
    golden = build_golden("rm", cfg, CPU)
    assert isinstance(golden, RewardModelGolden)
    return golden


PROMPTS = [
    _user("hello there"),
    _user("what did you do this weekend " * 6),
    [{"role": "system", "content": "be nice"}, *_user("i feel tired and sad today")],
    _user("the weather is nice"),
    _user("how are you doing today " * 3),
    _user("hi"),
    _user("that sounds wonderful i love it " * 2),
]
RESPONSES = ["we went hiking", "i am doing great", "oh no", "sunny " * 5, "hello", "i love it", "thanks"]


@pytest.mark.parametrize("text_format", [RMTextFormat.hh, RMTextFormat.chat_template])
def test_rm_batched_scores_match_one_by_one(tiny_rm_dir, text_format):
    golden = _rm(tiny_rm_dir, batch_size=3, max_length=64, text_format=text_format)
    batched = golden.score(PROMPTS, RESPONSES)
    assert batched.shape == (len(PROMPTS),) and batched.dtype == np.float64
    assert np.all(np.isfinite(batched))
    assert np.unique(batched).size == len(batched)  # distinct pairs, distinct scores: order is testable
    single = np.array([golden.score([p], [r])[0] for p, r in zip(PROMPTS, RESPONSES, strict=True)])
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)


def test_rm_gpt2_without_pad_token_batches_faithfully(tiny_rm_dir, tmp_path):
    """GPT-2 RMs (the paper's golden RMs): absolute positions and no pad token (pad = eos, right-padded)."""
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    path = tmp_path / "gpt2_rm"
    tok = AutoTokenizer.from_pretrained(tiny_rm_dir)
    tok.pad_token = None
    tok.save_pretrained(path)
    torch.manual_seed(2)
    config = GPT2Config(
        vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2, num_labels=1,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    GPT2ForSequenceClassification(config).save_pretrained(path)

    golden = _rm(path, batch_size=3, max_length=64)
    assert golden.tokenizer.pad_token == golden.tokenizer.eos_token
    assert golden.model.config.pad_token_id == golden.tokenizer.eos_token_id
    batched = golden.score(PROMPTS, RESPONSES)
    single = np.array([golden.score([p], [r])[0] for p, r in zip(PROMPTS, RESPONSES, strict=True)])
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)


def test_rm_chat_template_format_renders_the_response_as_assistant(tiny_rm_dir):
    golden = _rm(tiny_rm_dir, text_format=RMTextFormat.chat_template)
    text = render_pair(golden.tokenizer, golden.text_format, _user("hi"), "hello")
    assert text == "<s>user: hi</s><s>assistant: hello</s>"


def test_rm_truncation_keeps_the_end(tiny_rm_dir):
    golden = _rm(tiny_rm_dir, max_length=16, batch_size=4)
    long_a = _user("hello there how are you doing today " * 200)
    long_b = _user("we went hiking and it was amazing " * 200)
    scores = golden.score([long_a, long_b, long_a], ["i love it", "i love it", "i feel tired and sad today"])
    assert np.all(np.isfinite(scores))
    # Only the last 16 tokens count: different openings with the same ending score alike ...
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)
    # ... and a different response (at the end) scores differently.
    assert abs(scores[0] - scores[2]) > 1e-4


def test_rm_needs_a_name_or_path():
    with pytest.raises(ValueError, match=r"golden\.myrm\.name_or_path"):
        build_golden("myrm", GoldenConfig(kind=GoldenKind.rm), CPU)


def test_rm_unreachable_hub_id_names_the_key():
    cfg = GoldenConfig(kind=GoldenKind.rm, name_or_path="afd-tests/not-a-cached-rm")
    with pytest.raises(ModelSourceError, match=r"golden\.rm\.name_or_path=afd-tests/not-a-cached-rm"):
        build_golden("rm", cfg, CPU)
