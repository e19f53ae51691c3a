"""Load policies and reward models from a local directory, a hub id or the embedded GGUF file, with the
tokenizer every model reading the policy's conversations shares; and identify a model's weights by
their contents for cache keys."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from afd.config.run import ModelConfig
from afd.models.gguf import dequantised_gguf_dir, gguf_path
from afd.models.hub import ModelSourceError, resolve_source, source_identity
from afd.runtime.fingerprint import FileDigests

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


def policy_source(cfg: ModelConfig, cache_dir: str | Path) -> tuple[str, str | None]:
    """(directory or hub id, revision) holding cfg's weights: what reward models start from (rm.init=base)."""
    if cfg.gguf_package and cfg.gguf_file:
        return str(dequantised_gguf_dir(cfg.gguf_package, cfg.gguf_file, cache_dir)), None
    source = resolve_source(cfg.name_or_path, cfg.revision, "model.name_or_path")
    return source, None if os.path.isdir(source) else cfg.revision
