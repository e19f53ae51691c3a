"""The Best-of-N sampler: the same distribution as `generate`, shared-prefix decoding that matches an
unpadded forward, EOS stops, reproducibility, output order; scoring pools with a shared prefix.

Distribution checks are chi-square tests at alpha = 1e-3 with fixed seeds (deterministic), each paired
with a negative control that the same test must reject, so a pass means something.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
)
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from afd.config.run import RMTextFormat, SamplingConfig
from afd.generation.kv_cache import autocast_weight_copies
from afd.generation.nucleus import next_token_probs, sample_next_tokens
from afd.generation.prompts import encode_prompts
from afd.generation.sampling import _sample_shared_prefix, sample_responses, sample_token_ids
from afd.generation.scoring import prompt_groups, response_logprobs, shared_prefix_lengths
from afd.rewards.classifier import ClassifierReward, encode_pairs, pooled_index

from conftest import build_tiny_tokenizer, tiny_llama_config

ALPHA = 1e-3


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def reference_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """What generate(do_sample=True, top_k=0) samples from, built from transformers' own warpers."""
    scores = logits.float().clone()
    if temperature != 1.0:
        scores = TemperatureLogitsWarper(temperature)(None, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    return torch.softmax(scores, dim=-1)


def chi2_goodness_of_fit(samples, probs: np.ndarray) -> float:
    """p-value of `samples` (category ids) under `probs`; rare categories pooled to expected counts >= 5.
    A sample in a zero-probability category fails outright (a token outside the nucleus)."""
    probs = np.asarray(probs, dtype=np.float64) / np.sum(probs)
    counts = np.bincount(np.asarray(samples), minlength=len(probs)).astype(float)
    assert counts[probs == 0].sum() == 0, "sampled a category of probability 0"
    expected = probs * counts.sum()
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    return float(stats.chisquare(obs[keep], exp[keep]).pvalue)


def chi2_two_sample(a, b, n_categories: int) -> float:
    """p-value that two samples of category ids come from one distribution (rare categories pooled)."""
    ca = np.bincount(np.asarray(a), minlength=n_categories)
    cb = np.bincount(np.asarray(b), minlength=n_categories)
    big = (ca + cb) >= 10
    table = np.array([np.append(ca[big], ca[~big].sum()), np.append(cb[big], cb[~big].sum())])
    table = table[:, table.sum(0) > 0]
    return float(stats.chi2_contingency(table).pvalue)


# --------------------------------------------------------------------------- the per-step distribution


@pytest.mark.parametrize("temperature,top_p", [(1.0, 0.95), (0.7, 0.9), (1.5, 0.5), (1.0, 1.0), (1.0, 1e-6)])
def test_next_token_probs_equal_generate_warpers(temperature, top_p):
    g = torch.Generator().manual_seed(0)
    # Peaked rows decide the nucleus from the first 64 candidates; flat ones need the wider passes.
    logits = torch.cat([torch.randn(4, 5000, generator=g) * s for s in (0.05, 1.0, 4.0, 30.0)])
    ref = reference_probs(logits, temperature, top_p)
    got = next_token_probs(logits, temperature, top_p)
    assert torch.equal(got > 0, ref > 0)
    assert torch.allclose(got, ref, atol=1e-6, rtol=1e-5)
    assert torch.allclose(got.sum(-1), torch.ones(len(got)))
    if top_p == 1e-6:
        assert ((got > 0).sum(-1) == 1).all()  # at least one token always survives


def test_sample_next_tokens_draws_from_the_nucleus():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 400, generator=g) * 3
    probs = reference_probs(logits, 0.8, 0.9)[0].numpy().astype(np.float64)
    draws = sample_next_tokens(logits.expand(20000, -1), 0.8, 0.9, torch.Generator().manual_seed(2))
    assert chi2_goodness_of_fit(draws.numpy(), probs) > ALPHA
    # Negative control: the same draws against the untempered distribution are rejected.
    assert chi2_goodness_of_fit(draws.numpy(), reference_probs(logits, 1.0, 1.0)[0].double().numpy()) < ALPHA


# ------------------------------------------------------------------------ a model with a known distribution


def bigram_model(tok, likely_eos_after: int) -> LlamaForCausalLM:
    """A Llama whose next-token logits depend on the current token only (attention and MLP outputs zeroed):
    P(next | current) = softmax(lm_head(norm(embed(current)))) is known in closed form. After token
    `likely_eos_after`, EOS is as likely as the second most likely token."""
    torch.manual_seed(3)
    config = tiny_llama_config(tok)
    config.tie_word_embeddings = False
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.normal_()
        model.lm_head.weight.normal_(std=0.6)
        h = model.model.norm(model.model.embed_tokens.weight[likely_eos_after])
        second = model.lm_head(h).sort().values[-2]
        model.lm_head.weight[tok.eos_token_id] = h * second / h.dot(h)
    return model


def bigram_transitions(model, temperature, top_p) -> torch.Tensor:
    with torch.no_grad():
        logits = model.lm_head(model.model.norm(model.model.embed_tokens.weight))
    return reference_probs(logits, temperature, top_p).double()


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_samples_follow_the_known_distribution(tok, shared_prefix):
    prompt = encode_prompts(tok, [[{"role": "user", "content": "hello there"}]], 256)[0]
    model = bigram_model(tok, likely_eos_after=prompt[-1])
    T, top_p, n = 0.8, 0.9, 4000
    # batch_size < n: one prompt's samples span several decode batches of one prefill.
    cfg = SamplingConfig(
        temperature=T, top_p=top_p, max_new_tokens=2, batch_size=1500, shared_prefix=shared_prefix
    )
    out = sample_token_ids(model, [prompt], n, cfg, seed=0, eos_token_id=tok.eos_token_id, pad_token_id=0)[0]
    eos, vocab = tok.eos_token_id, len(tok)
    trans = bigram_transitions(model, T, top_p)
    p1 = trans[prompt[-1]]
    first = [r[0] for r in out]
    assert chi2_goodness_of_fit(first, p1.numpy()) > ALPHA
    assert chi2_goodness_of_fit(first, bigram_transitions(model, 1.0, top_p)[prompt[-1]].numpy()) < ALPHA
    # Second token: category `vocab` = stopped at EOS after one token.
    p2 = torch.cat([p1 @ trans - p1[eos] * trans[eos], p1[eos].reshape(1)]).numpy()
    second = [r[1] if len(r) > 1 else vocab for r in out]
    assert chi2_goodness_of_fit(second, p2) > ALPHA
    # EOS ends a response: exactly the responses whose first token is EOS have one token.
    assert all((len(r) == 1) == (r[0] == eos) for r in out)
    assert 0 < sum(r[0] == eos for r in out) < n


def peaked_llama(tok, **extra) -> LlamaForCausalLM:
    # A large init gives context-dependent, peaked distributions (~30 tokens in a 0.9 nucleus).
    torch.manual_seed(4)
    return LlamaForCausalLM(tiny_llama_config(tok, initializer_range=0.5, **extra)).eval()


def test_shared_prefix_matches_generate_in_distribution(tok):
    model = peaked_llama(tok)
    prompts = encode_prompts(
        tok,
        [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "what did you do this weekend"}]],
        256,
    )
    base = SamplingConfig(temperature=0.9, top_p=0.9, max_new_tokens=2, batch_size=1000)
    n, vocab = 1500, len(tok)
    fast = sample_token_ids(model, prompts, n, base, 0, tok.eos_token_id, 0)
    plain = sample_token_ids(
        model, prompts, n, dataclasses.replace(base, shared_prefix=False), 0, tok.eos_token_id, 0
    )
    for i in range(len(prompts)):
        for step in (0, 1):
            a = [r[step] if len(r) > step else vocab for r in fast[i]]
            b = [r[step] if len(r) > step else vocab for r in plain[i]]
            assert chi2_two_sample(a, b, vocab + 1) > ALPHA, (i, step)
    # Negative control: the other prompt's samples are told apart.
    a = [r[0] for r in fast[0]]
    b = [r[0] for r in plain[1]]
    assert chi2_two_sample(a, b, vocab + 1) < ALPHA


# --------------------------------------------------------------------------- padding, caching, EOS


def tiny_gpt2(tok):
    torch.manual_seed(5)
    config = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=0.5,
    )
    return GPT2LMHeadModel(config).eval()


def sliding_mistral(tok):
    # Sliding-window layers take transformers' own cache path instead of the preallocated one.
    torch.manual_seed(6)
    config = MistralConfig(
        **{**tiny_llama_config(tok).to_dict(), "sliding_window": 6, "model_type": "mistral"}
    )
    return MistralForCausalLM(config).eval()


MODELS = {"llama": peaked_llama, "gpt2": tiny_gpt2, "mistral_sliding": sliding_mistral}


@pytest.mark.parametrize("kind", list(MODELS))
def test_decoding_logits_equal_an_unpadded_forward(tok, kind):
    """Prompts of different lengths share one left-padded prefill; every decode step's logits must equal a
    plain forward of that prompt alone plus the sampled tokens, also after finished rows left the batch."""
    model = MODELS[kind](tok)
    prompts = [[5, 9, 11], [7, 8, 9, 10, 12, 13, 14, 15, 16], list(range(20, 37))]
    n, eos = 3, tok.eos_token_id
    cfg = SamplingConfig(max_new_tokens=6, batch_size=64)
    records: dict[int, list[tuple[torch.Tensor, int]]] = {}
    g = torch.Generator().manual_seed(0)

    def pick(logits, sample_ids, step):
        tokens = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)[:, 0]
        tokens[tokens == eos] = eos + 1
        for row, sid in enumerate(sample_ids.tolist()):
            # Samples 0 and 4 stop at their second token: the batch shrinks mid-decode.
            if sid in (0, 4) and len(records.get(sid, [])) == 1:
                tokens[row] = eos
            records.setdefault(sid, []).append((logits[row].clone(), int(tokens[row])))
        return tokens

    with torch.inference_mode():
        out = _sample_shared_prefix(model, prompts, n, cfg, eos, 0, False, "t", pick)
        for i, prompt in enumerate(prompts):
            for k in range(n):
                steps = records[i * n + k]
                tokens = [t for _, t in steps]
                assert out[i][k] == tokens
                assert len(tokens) == (2 if i * n + k in (0, 4) else cfg.max_new_tokens)
                full = model(torch.tensor([prompt + tokens])).logits[0]
                for j, (logits, _) in enumerate(steps):
                    assert torch.allclose(logits, full[len(prompt) - 1 + j], atol=1e-4), (kind, i, k, j)


def test_all_rows_stop_at_eos(tok):
    model = peaked_llama(tok)

    def pick(logits, sample_ids, step):
        return torch.full_like(sample_ids, tok.eos_token_id)

    with torch.inference_mode():
        out = _sample_shared_prefix(
            model, [[5, 6], [7]], 4, SamplingConfig(), tok.eos_token_id, 0, False, "t", pick
        )
    assert out == [[[tok.eos_token_id]] * 4] * 2


def test_bf16_autocast_weight_copies_give_the_same_logits_and_come_back(tok):
    model = peaked_llama(tok)
    ids = torch.tensor([[5, 9, 11, 40, 41]])
    params = {name: p for name, p in model.named_parameters()}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model(ids).logits
        with autocast_weight_copies(model, True):
            assert model.lm_head.weight.dtype == torch.bfloat16
            assert model.model.embed_tokens.weight.dtype == torch.float32
            swapped = model(ids).logits
    assert torch.equal(plain, swapped)
    assert all(p is params[name] for name, p in model.named_parameters())
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bf16_decoding_stays_close_to_an_unpadded_forward(tok):
    model = peaked_llama(tok)
    prompts = [[5, 9, 11], list(range(20, 37))]
    records = {}

    def pick(logits, sample_ids, step):
        tokens = logits.argmax(-1)
        for row, sid in enumerate(sample_ids.tolist()):
            records.setdefault(sid, []).append(logits[row].clone())
        return tokens

    with torch.inference_mode():
        out = _sample_shared_prefix(
            model, prompts, 2, SamplingConfig(max_new_tokens=4), 2, 0, True, "t", pick
        )
        for i, prompt in enumerate(prompts):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                full = model(torch.tensor([prompt + out[i][0]])).logits[0].float()
            for j, logits in enumerate(records[i * 2]):
                ref = full[len(prompt) - 1 + j]
                # bf16 rounding, not a misplaced position: the error is small against the logits' spread.
                assert (logits - ref).abs().max() < 0.05 * ref.std(), (i, j)


# --------------------------------------------------------------------------- the public API


MESSAGES = [
    [{"role": "user", "content": "what did you do this weekend we went hiking"}],
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "hello there how are you"}],
]


def test_responses_come_back_in_prompt_order(tok):
    """With a one-token nucleus sampling is greedy: each prompt's responses must equal greedy `generate`
    on that prompt alone, whatever the length order of the batch."""
    model = peaked_llama(tok)
    cfg = SamplingConfig(top_p=1e-6, max_new_tokens=5, batch_size=4)
    expected = []
    for ids in encode_prompts(tok, MESSAGES, 256):
        with torch.inference_mode():
            gen = model.generate(
                torch.tensor([ids]), do_sample=False, max_new_tokens=5, pad_token_id=0, eos_token_id=2
            )
        expected.append(tok.decode(gen[0, len(ids) :], skip_special_tokens=True).strip())
    for shared in (True, False):
        out = sample_responses(
            model, tok, MESSAGES, 2, dataclasses.replace(cfg, shared_prefix=shared), seed=0
        )
        assert out == [[e, e] for e in expected]
    assert len(set(expected)) == len(expected)  # the prompts are told apart


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_reproducible_given_the_seed(tok, shared_prefix):
    model = peaked_llama(tok)
    cfg = SamplingConfig(max_new_tokens=6, batch_size=4, shared_prefix=shared_prefix)
    a = sample_responses(model, tok, MESSAGES, 3, cfg, seed=0)
    b = sample_responses(model, tok, MESSAGES, 3, cfg, seed=0)
    c = sample_responses(model, tok, MESSAGES, 3, cfg, seed=1)
    assert a == b
    assert a != c
    assert [len(r) for r in a] == [3, 3, 3]
    assert model.training is False


def test_a_prompts_samples_do_not_depend_on_what_is_sampled_with_it(tok):
    """Per-prompt random streams: sampling prompts together or one at a time, in other batch sizes, or
    fewer samples, gives each prompt the same samples (what makes sharding across ranks exact)."""
    model = peaked_llama(tok)
    prompts = encode_prompts(tok, MESSAGES, 256)
    eos = tok.eos_token_id
    together = sample_token_ids(model, prompts, 4, SamplingConfig(max_new_tokens=6, batch_size=3), 0, eos, 0)
    alone = [sample_token_ids(model, [p], 4, SamplingConfig(max_new_tokens=6), 0, eos, 0)[0] for p in prompts]
    reversed_order = sample_token_ids(model, prompts[::-1], 4, SamplingConfig(max_new_tokens=6), 0, eos, 0)
    assert together == alone == reversed_order[::-1]
    fewer = sample_token_ids(model, prompts, 2, SamplingConfig(max_new_tokens=6), 0, eos, 0)
    assert [rows[:2] for rows in together] == fewer
    assert len({tuple(r) for rows in together for r in rows}) > len(prompts), "samples of a prompt differ"


def test_stream_uniforms_are_uniform_and_independent_across_keys_and_steps():
    from scipy import stats

    from afd.generation.streams import stream_keys, uniforms

    keys = stream_keys([[1, 2, 3], [1, 2, 4]], 500, seed=0)
    draws = np.stack([uniforms(keys, step) for step in range(20)])  # [steps, samples]
    assert len(set(keys.tolist())) == keys.size
    assert stats.kstest(draws.ravel(), "uniform").pvalue > ALPHA
    # Consecutive steps and neighbouring samples are uncorrelated.
    assert abs(np.corrcoef(draws[:-1].ravel(), draws[1:].ravel())[0, 1]) < 0.03
    assert abs(np.corrcoef(draws[:, :-1].ravel(), draws[:, 1:].ravel())[0, 1]) < 0.03
    assert not np.array_equal(stream_keys([[1, 2, 3]], 1, seed=0), stream_keys([[1, 2, 3]], 1, seed=1))


def test_n_equal_one_and_training_mode_restored(tok):
    model = peaked_llama(tok).train()
    out = sample_responses(model, tok, MESSAGES, 1, SamplingConfig(max_new_tokens=3), seed=0, bf16=True)
    assert [len(r) for r in out] == [1, 1, 1]
    assert all(isinstance(r[0], str) for r in out)
    assert model.training
    with pytest.raises(ValueError, match="n must be"):
        sample_responses(model, tok, MESSAGES, 0, SamplingConfig(), seed=0)


# --------------------------------------------------------------------------- scoring Best-of-N pools

POOL_PROMPTS = [
    [{"role": "user", "content": "hello there how are you doing today"}],
    [{"role": "system", "content": "be kind"}, {"role": "user", "content": "i feel tired and sad today"}],
    [{"role": "user", "content": "what did you do this weekend"}],
]
POOL_RESPONSES = ["i am doing great", "that sounds wonderful i love it", "", "i am doing great", "oh no"]


def pool_pairs():
    """Three prompts x five responses (a duplicate and an empty one), two prompts scored alone, and a pool
    of three identical responses (nothing but the last token can be left to recompute)."""
    alone = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "the weather is nice"}]]
    same = [{"role": "user", "content": "we went hiking"}]
    prompts = [p for p in POOL_PROMPTS for _ in POOL_RESPONSES] + alone + [same] * 3
    responses = POOL_RESPONSES * len(POOL_PROMPTS) + ["we went hiking", "hi"] + ["i love it"] * 3
    return prompts, responses


@pytest.mark.parametrize(
    "text_format,max_length",
    [(RMTextFormat.hh, 512), (RMTextFormat.chat_template, 512), (RMTextFormat.hh, 12)],
)
def test_classifier_pools_score_as_one_at_a_time(tiny_rm_dir, text_format, max_length):
    """Pairs of one prompt share their common tokens; each score must equal the pair scored alone
    (max_length=12 truncates on the left, so pool members no longer share a prefix)."""
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm_dir).eval()
    rm_tok = AutoTokenizer.from_pretrained(tiny_rm_dir)
    reward = ClassifierReward("rm", model, rm_tok, text_format, max_length, batch_size=4)
    prompts, responses = pool_pairs()
    groups = prompt_groups(prompts)
    ids = encode_pairs(rm_tok, text_format, prompts, responses, max_length)
    split = shared_prefix_lengths(ids, groups, [pooled_index(x, rm_tok.pad_token_id) for x in ids])
    if max_length == 512:
        assert min(split[: len(POOL_RESPONSES) * len(POOL_PROMPTS)]) > 5 and split[-5:-3] == [0, 0]
    batched = reward.score(prompts, responses)
    alone = np.array([reward.score([p], [r])[0] for p, r in zip(prompts, responses)])
    assert np.allclose(batched, alone, atol=1e-4)
    assert np.ptp(batched) > 1e-3  # the scores are not all the same
    with torch.inference_mode():
        manual = model(torch.tensor([ids[1]])).logits[0, 0].item()
    assert batched[1] == pytest.approx(manual, abs=1e-4)


def test_pooled_logprobs_equal_one_by_one(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    causal_tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts, responses = pool_pairs()
    batched = response_logprobs(model, causal_tok, prompts, responses, 256, batch_size=4, desc="t")
    alone = [
        response_logprobs(model, causal_tok, [p], [r], 256, 1, "t")[0] for p, r in zip(prompts, responses)
    ]
    assert np.allclose(batched, alone, atol=1e-4)
    # The empty response still scores its end-of-turn token.
    assert (batched < 0).all()
    bf16 = response_logprobs(model, causal_tok, prompts, responses, 256, batch_size=4, desc="t", bf16=True)
    assert np.allclose(bf16, batched, rtol=0.05, atol=0.1)
