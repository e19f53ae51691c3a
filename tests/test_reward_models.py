"""Reward-model training (BCE and Bradley-Terry) and the rewards that score pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from afd.config.stages import RMLoss
from afd.data.pairs import Pair, split_heldout
from afd.generation.scoring import response_logprobs
from afd.rewards.kinds.length import LengthReward
from afd.rewards.kinds.random import RandomReward
from afd.stages.best_of_n import mean_win_vs_pool
from afd.stages.reward_model import heldout_accuracy, load_trained_reward_model, train_reward_model

from conftest import tiny_overrides

GOOD = ["that sounds wonderful i love it", "we went hiking and it was amazing", "i am doing great thanks"]
BAD = ["i feel tired and sad today", "oh no i hope you feel better", "the weather is tired and sad"]


def separable_pairs(n_prompts: int = 40) -> list[Pair]:
    return [
        Pair(f"p{i}", [{"role": "user", "content": f"hello there {i}"}], GOOD[i % 3], BAD[i % 3])
        for i in range(n_prompts)
    ]


@pytest.mark.parametrize("loss", [RMLoss.bce, RMLoss.bt])
def test_reward_model_learns_a_separable_fixture(make_context, tiny_model_dir, tmp_path, loss):
    ctx = make_context(
        [
            *tiny_overrides(tiny_model_dir, tmp_path / "cache"),
            "objective.reward.trainer.max_steps=30",
            "objective.reward.trainer.learning_rate=3e-3",
            f"objective.reward.loss={loss.value}",
        ]
    )
    cfg = ctx.cfg.objective.reward
    assert cfg.loss is loss
    train, heldout = split_heldout(separable_pairs(), 0.25, seed=0)
    reward = train_reward_model(ctx, str(tiny_model_dir), {"model": "tiny"}, train, cfg)
    # The reward scores with the model trained in this process; reading the cache entry gives the same.
    reloaded = load_trained_reward_model(ctx, reward.path)
    prompts = [p.prompt for p in heldout]
    responses = [GOOD[i % 3] for i in range(len(prompts))]
    assert np.allclose(reward.score(prompts, responses), reloaded.score(prompts, responses), atol=1e-4)
    acc = heldout_accuracy(reward, heldout, pointwise=loss is RMLoss.bce)
    assert acc["reward/heldout_pairs"] == len(heldout) > 0
    assert acc["reward/accuracy"] >= 0.9, acc
    # A Bradley-Terry logit has an arbitrary offset: only BCE's sign means something.
    assert ("reward/pointwise_accuracy" in acc) == (loss is RMLoss.bce)
    # The head and the body both trained: weights differ from the base model's.
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    name = "model.layers.0.mlp.down_proj.weight"
    assert not torch.allclose(reward.model.state_dict()[name], base.state_dict()[name])
    # Same data and settings: the cache returns the same entry without training again.
    assert train_reward_model(ctx, str(tiny_model_dir), {"model": "tiny"}, train, cfg).path == reward.path


def test_response_logprobs_batched_equals_one_by_one(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = [[{"role": "user", "content": "hello there how are you"}], [{"role": "user", "content": "hi"}]]
    responses = ["i am doing great thanks for asking", "ok"]
    batched = response_logprobs(model, tok, prompts, responses, 256, batch_size=2, desc="t")
    single = [
        response_logprobs(model, tok, [p], [r], 256, batch_size=1, desc="t")[0]
        for p, r in zip(prompts, responses)
    ]
    assert np.allclose(batched, single, atol=1e-4)
    # Direct computation for the first pair.
    text = tok.apply_chat_template(prompts[0], tokenize=False, add_generation_prompt=True)
    p_ids = tok(text, add_special_tokens=False)["input_ids"]
    r_ids = tok(responses[0], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p_ids + r_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1], -1)
    manual = sum(float(logp[len(p_ids) - 1 + j, t]) for j, t in enumerate(r_ids))
    assert batched[0] == pytest.approx(manual, abs=1e-4)
    assert (batched < 0).all()


def test_sanity_rewards(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = [[{"role": "user", "content": "x"}]] * 3
    lengths = LengthReward(tok).score(prompts, ["a", "a much longer answer here", "mid length"])
    assert lengths[1] > lengths[2] > lengths[0]
    r1, r2 = RandomReward(0).score(prompts, ["a"] * 3), RandomReward(0).score(prompts, ["a"] * 3)
    assert np.array_equal(r1, r2) and len(set(r1)) == 3


def test_mean_win_vs_pool_is_the_win_rate_against_another_pool_member():
    rng = np.random.default_rng(0)
    g = rng.integers(0, 4, size=(5, 7)).astype(float)  # many ties
    w = mean_win_vs_pool(g)
    for p in range(5):
        for i in range(7):
            others = [g[p, j] for j in range(7) if j != i]
            brute = np.mean([1.0 if g[p, i] > b else 0.5 if g[p, i] == b else 0.0 for b in others])
            assert w[p, i] == pytest.approx(brute)
    # Each pair counted from both sides sums to one win: the pool's mean is exactly 1/2.
    assert np.allclose(w.mean(axis=1), 0.5)


def first_mlp_calls(model, monkeypatch) -> list[int]:
    """Grows by one each time the first decoder layer's MLP runs, in a forward pass or in the backward
    pass's recompute (counted in forward itself: a recompute does not run the module's hooks)."""
    from transformers.models.llama.modeling_llama import LlamaMLP

    calls, mlp_forward, first_mlp = [], LlamaMLP.forward, model.model.layers[0].mlp

    def counted(self, *args, **kwargs):
        calls.extend([1] if self is first_mlp else [])
        return mlp_forward(self, *args, **kwargs)

    monkeypatch.setattr(LlamaMLP, "forward", counted)
    return calls


@pytest.mark.parametrize("checkpointing", [False, True])
def test_prompt_shared_training_batches_score_and_differentiate_like_whole_sequences(
    tiny_rm_dir, monkeypatch, checkpointing
):
    """The classifier trainer encodes a prompt once per batch: its logits and gradients must be those of
    the whole sequences, one at a time. With activation checkpointing, both passes (prompts, then
    responses on their prompt's cache) run again in the backward pass, from the cache they were given:
    a cache dropped under checkpointing (transformers' default) scores the responses without their prompt,
    one appended twice on the replay (a DynamicLayer's) fails or differentiates something else."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from afd.config.run import RMTextFormat
    from afd.data.pairs import Pair
    from afd.rewards.classifier import encode_pairs
    from afd.stages.classifier_trainer import pair_batches, shared_prefix_scores

    tok = AutoTokenizer.from_pretrained(tiny_rm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm_dir, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    prompts = [[{"role": "user", "content": "hello there how are you"}], [{"role": "user", "content": "hi"}]]
    pairs = [
        Pair("a", prompts[0], "i love it", "i feel tired and sad today"),
        Pair("a", prompts[0], "that sounds wonderful", "oh no"),
        Pair("b", prompts[1], "we went hiking", "the weather is nice and sunny"),
    ]
    (batch,) = pair_batches(tok, pairs, 512, per_batch=6, pointwise=True, seed=0)
    assert len(batch["prefixes"]) == 2, "one prefix per prompt in the batch"
    model.train()  # as in the trainer: transformers checkpoints only in training mode
    calls = first_mlp_calls(model, monkeypatch)
    shared = shared_prefix_scores(model, batch, checkpointing)
    shared.sum().backward()
    assert len(calls) == (4 if checkpointing else 2), "prompts and responses ran once more each"
    layers = model.model.layers
    assert not any(layer.gradient_checkpointing or layer._can_checkpoint_with_cache for layer in layers)
    shared_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    # The same sequences (pair_batches orders prompts by seed: recover its order from the labels' pairs).
    order = sorted(range(len(pairs)), key=lambda i: pairs[i].prompt_id)
    ids_by_pair = {
        i: encode_pairs(
            tok,
            RMTextFormat.chat_template,
            [pairs[i].prompt] * 2,
            [pairs[i].positive, pairs[i].negative],
            512,
        )
        for i in order
    }
    whole = []
    for seq in (s for i in order for s in ids_by_pair[i]):
        whole.append(model(input_ids=torch.tensor([seq])).logits[0, 0])
    whole = torch.stack(whole)
    assert sorted(shared.tolist()) == pytest.approx(sorted(whole.tolist()), abs=1e-5)
    whole.sum().backward()
    for name, grad in shared_grads.items():
        assert torch.allclose(grad, model.get_parameter(name).grad, atol=1e-5), name


def test_a_training_batch_of_whole_sequences_recomputes_its_layers_with_the_same_gradients(
    tiny_rm_dir, monkeypatch
):
    """A batch whose sequences share no prefix (sequences cut to max_length from the left share nothing
    with their group) goes through the model whole; without activation checkpointing a batch of long ones
    holds every layer's activations (SmolLM2, 8 x 512 tokens: +5.6 GB in make run). Its layers must run
    again in the backward pass, give a plain forward's gradients, and be left uncheckpointed after."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from afd.data.pairs import Pair
    from afd.stages.classifier_trainer import pair_batches, shared_prefix_scores

    tok = AutoTokenizer.from_pretrained(tiny_rm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm_dir, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    model.train()
    prompt = [{"role": "user", "content": "hello there how are you doing on this fine day " * 3}]
    pairs = [Pair("a", prompt, "i love it so much", "i feel tired and sad today")]
    (batch,) = pair_batches(tok, pairs, 12, per_batch=2, pointwise=True, seed=0)
    assert not batch["prefixes"], "the cut sequences start differently: nothing shared, the batch goes whole"
    mlp_calls = first_mlp_calls(model, monkeypatch)

    scores = shared_prefix_scores(model, batch, checkpointing=True)
    scores.sum().backward()
    assert len(mlp_calls) == 2, "the first layer ran once forward and once more in the backward pass"
    assert not any(layer.gradient_checkpointing for layer in model.model.layers)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    plain = model(input_ids=batch["suffix_ids"], attention_mask=batch["suffix_mask"]).logits[:, 0]
    assert len(mlp_calls) == 3
    assert torch.allclose(scores, plain, atol=1e-6)
    plain.sum().backward()
    for name, grad in grads.items():
        assert torch.allclose(grad, model.get_parameter(name).grad, atol=1e-6), name
