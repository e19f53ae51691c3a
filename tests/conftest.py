"""Shared fixtures: offline environment, a Hydra compose helper, and a tiny causal LM saved to disk.

The tiny model is loaded by afd through `model.name_or_path`, the same path a user's model takes.
"""

from __future__ import annotations

import os
from pathlib import Path

# Set before anything imports huggingface_hub / wandb: nothing in the tests touches the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one intra-op thread each, or they fight over the cores.
    import torch  # noqa: E402

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"

# A ChatML-like template, as small instruct models use; the generation prompt ends with "assistant:".
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)

_CORPUS = [
    "hello there how are you doing today",
    "i am doing great thanks for asking",
    "that sounds wonderful i love it",
    "what did you do this weekend",
    "we went hiking and it was amazing",
    "i feel tired and sad today",
    "oh no i hope you feel better soon",
    "the weather is nice and sunny",
    "user: assistant: system:",
] * 20


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


def tiny_llama_config(tok, **extra):
    from transformers import LlamaConfig

    # Trainers overwrite bos/eos/pad with the tokenizer's, so take them from it.
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        **extra,
    )


def build_tiny_model_dir(path: Path) -> Path:
    """Save a 2-layer Llama and its tokenizer to `path` (what `save_pretrained` gives a user)."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    tok = build_tiny_tokenizer()
    config = tiny_llama_config(tok)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_rm_dir(tmp_path_factory) -> Path:
    """A tiny sequence-classification reward model (num_labels=1), as a golden or proxy RM."""
    import torch
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("tiny_rm")
    tok = build_tiny_tokenizer()
    config = tiny_llama_config(tok, num_labels=1)
    LlamaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def compose(tmp_path):
    """compose(overrides) -> DictConfig, composed from conf/ exactly as `afd` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from afd.config import register_configs

    register_configs()

    def _compose(overrides=(), return_hydra_config=False):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(
                config_name="config",
                overrides=list(overrides),
                return_hydra_config=return_hydra_config,
            )

    return _compose


def tiny_overrides(model_dir: Path, cache_dir: Path) -> list[str]:
    """Run the real pipeline on the tiny model, shrunk by debug=fast, with its own stage cache."""
    return ["model=custom", f"model.name_or_path={model_dir}", "debug=fast", f"paths.cache_dir={cache_dir}"]


@pytest.fixture
def make_context(compose, tmp_path):
    """make_context(overrides) -> (RunContext, tracker-less) for calling stages directly."""
    from afd.config import to_run_config
    from afd.models.devices import resolve_device, resolve_dtype, use_bf16_autocast
    from afd.runtime.cache import StageCache
    from afd.runtime.context import RunContext
    from afd.runtime.tracking import NullTracker

    def _make(overrides):
        cfg = to_run_config(compose([*overrides, f"paths.output_dir={tmp_path / 'out'}"]))
        (tmp_path / "out").mkdir(exist_ok=True)
        device = resolve_device(cfg.compute)
        return RunContext(
            cfg=cfg,
            output_dir=tmp_path / "out",
            cache=StageCache(cfg.paths.cache_dir),
            tracker=NullTracker(),
            device=device,
            dtype=resolve_dtype(cfg.compute, device),
            bf16=use_bf16_autocast(cfg.compute, device),
        )

    return _make


def objective_schemas() -> dict[str, type]:
    """{objective name (file in conf/objective/): the schema it composes to}, for parametrizing tests over
    every objective, so that an objective added later is covered without editing them."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from afd.config import register_configs

    register_configs()
    out = {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for path in sorted((CONF_DIR / "objective").glob("*.yaml")):
            cfg = hydra_compose(config_name="config", overrides=[f"objective={path.stem}"])
            out[path.stem] = OmegaConf.get_type(cfg.objective)
    return out


def wandb_run_record(run_dir: Path):
    """The run record (group, job type, ...) of an offline W&B run, read from its run-*.wandb log: W&B's
    7-byte file header, then LevelDB log records (32 KiB blocks, 7-byte chunk headers) of protobufs."""
    from wandb.proto import wandb_internal_pb2

    (log_file,) = run_dir.glob("run-*.wandb")
    data, block, pos, record = log_file.read_bytes(), 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        record = chunk if kind in (1, 2) else record + chunk  # FULL, FIRST | MIDDLE, LAST
        if kind in (1, 4):
            parsed = wandb_internal_pb2.Record()
            parsed.ParseFromString(record)
            if parsed.WhichOneof("record_type") == "run":
                return parsed.run
    raise AssertionError(f"no run record in {log_file}")
