"""The schemas of what every run has, whatever its objective: the model, the data, the golden rewards,
sampling, scoring, evaluation, tracking, compute and paths (conf/config.yaml and its groups model/,
dataset/, golden/, logger/). The objective's own schema lives in its module in afd/objectives/.

The field docstrings are the config reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from afd.config.checks import Problem, at_least, positive, ruled


class Choice(str, Enum):
    """A closed set of config values; prints as its value (run directory names interpolate it)."""

    def __str__(self) -> str:
        return self.value


class DatasetSource(Choice):
    """Where prompts and demonstrations come from; one builder each in afd/data/."""

    chitchat_upbeat = "chitchat_upbeat"
    """Embedded: real human chats from the `chitchat-dataset` package, upbeat next turns as demos."""
    hh_harmless = "hh_harmless"
    """Anthropic HH-RLHF harmless-base, from the hub or local files in the same format."""
    hh_helpful = "hh_helpful"
    """Anthropic HH-RLHF helpful-base, from the hub or local files in the same format."""
    jsonl = "jsonl"
    """A user's own JSON-lines file of prompts and demonstrations."""


class GoldenKind(Choice):
    """Golden (evaluation-only) rewards; implementations in afd/rewards/golden.py."""

    upbeat = "upbeat"
    """VADER compound sentiment of the response, in [-1, 1] (embedded)."""
    harmless = "harmless"
    """1 - P(offensive) of the response from alt-profanity-check (embedded)."""
    rm = "rm"
    """A sequence-classification reward model (hub id or local path); score = logit."""


class RMTextFormat(Choice):
    """How a golden reward model sees a (prompt, response) pair."""

    hh = "hh"
    """Anthropic HH text "\\n\\nHuman: ...\\n\\nAssistant: ..." (the Ray2333 GPT-2 RMs' format)."""
    chat_template = "chat_template"
    """The reward model tokenizer's own chat template."""


class LoggerKind(Choice):
    wandb = "wandb"
    """Weights & Biases (offline by default: no account or network needed)."""
    none = "none"
    """Log to disk only (metrics.json, CSV, plots)."""


class WandbMode(Choice):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class Precision(Choice):
    auto = "auto"
    """bf16 where the hardware supports it (CUDA with bf16, or CPU autocast), else fp32."""
    fp32 = "fp32"
    bf16 = "bf16"


@dataclass
class LoraSettings:
    enabled: bool = False
    """Train LoRA adapters (peft) instead of all weights."""
    r: int = at_least(1, 32)
    """LoRA rank (paper defaults: r=32, alpha=32)."""
    alpha: int = positive(32)
    """LoRA scaling alpha."""
    dropout: float = ruled(0.05, lambda v: 0 <= v < 1, "in [0, 1)")
    """Dropout on the LoRA branch."""
    target_modules: str = "all-linear"
    """peft target_modules: "all-linear" or a comma-separated list of module names."""


@dataclass
class ModelConfig:
    name: str = MISSING
    """Short name used in run names (e.g. smollm2_135m, gpt2)."""
    name_or_path: str = MISSING
    """Hub id or local directory. With `gguf_package` set: the package name holding the GGUF file."""
    gguf_package: Optional[str] = None
    """Installed Python package whose directory holds `gguf_file` (the embedded default model)."""
    gguf_file: Optional[str] = None
    """GGUF file name inside `gguf_package`; de-quantised once into the cache as safetensors."""
    revision: Optional[str] = None
    """Hub revision (branch, tag or commit) to pin; ignored for local paths."""
    chat_template: Optional[str] = None
    """Jinja chat template overriding the tokenizer's; None keeps the tokenizer's, or uses afd's
    HH-style template when the tokenizer has none (GPT-2)."""
    max_length: int = at_least(2, 512)
    """Maximum prompt + response tokens in training; must not exceed the model's position limit."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """LoRA adapters for every policy-training stage (SFT, DPO, RL); merged into the saved policy."""

    def checks(self) -> list[Problem]:
        return [
            ("gguf_file", (self.gguf_package is None) == (self.gguf_file is None), "set with gguf_package")
        ]


@dataclass
class DatasetConfig:
    name: str = MISSING
    """Short name used in run names."""
    source: DatasetSource = MISSING
    """Which builder reads the data (see DatasetSource)."""
    path: Optional[str] = None
    """Local file or directory (HH: a directory with train.jsonl[.gz]/test.jsonl[.gz]; jsonl: the file),
    or for HH a hub dataset id. None for the embedded chitchat data."""
    subset: Optional[str] = None
    """Hub data_dir for HH (harmless-base / helpful-base)."""
    demonstrations_path: Optional[str] = None
    """JSON-lines file of {"prompt", "demonstration"} rows replacing the default demonstrations,
    matched by prompt (the paper used GPT-4 demonstrations for the HH prompts)."""
    context_turns: int = at_least(1, 3)
    """chitchat: number of preceding chat turns that form the prompt."""
    min_demo_score: float = 0.5
    """chitchat: keep a human reply as a demonstration only if its upbeat (VADER) score is at least this."""
    train_size: int = at_least(1, 512)
    """Maximum number of examples in the train split (the demonstrations SFT learns from)."""
    align_size: int = at_least(0, 128)
    """Maximum number of examples in the align split: the prompts every stage after SFT learns on
    (reward-model and DPO pairs, RL rollouts, discriminator samples)."""
    test_size: int = at_least(1, 64)
    """Maximum number of examples in the test split (evaluation and Best-of-N prompts)."""
    split_seed: int = 0
    """Seed of the split assignment; fixed apart from the run seed so all seeds share one split."""


@dataclass
class GoldenConfig:
    kind: GoldenKind = MISSING
    """Which golden reward (see GoldenKind)."""
    name_or_path: Optional[str] = None
    """rm only: hub id or local path of a sequence-classification reward model."""
    text_format: RMTextFormat = RMTextFormat.hh
    """rm only: how the reward model sees the prompt and response."""
    max_length: int = at_least(2, 512)
    """rm only: truncate prompt + response to this many tokens (keeping the end)."""
    batch_size: int = at_least(1, 16)
    """rm only: sequences scored per forward pass."""

    def checks(self) -> list[Problem]:
        return [
            (
                "name_or_path",
                self.kind is not GoldenKind.rm or bool(self.name_or_path),
                "a hub id or directory",
            )
        ]


@dataclass
class LoggerConfig:
    kind: LoggerKind = LoggerKind.wandb
    """wandb or none."""
    project: str = "afd"
    """W&B project."""
    entity: Optional[str] = None
    """W&B entity (team or user); None uses the account default."""
    mode: WandbMode = WandbMode.offline
    """offline (default: no account needed, `wandb sync` uploads later), online or disabled."""
    tags: List[str] = field(default_factory=list)
    """Extra W&B tags (the git commit is always added)."""


@dataclass
class SamplingConfig:
    temperature: float = positive(1.0)
    """Sampling temperature (paper: 1.0)."""
    top_p: float = ruled(0.95, lambda v: 0 < v <= 1, "in (0, 1]")
    """Nucleus sampling mass (paper: 0.95)."""
    max_new_tokens: int = at_least(1, 48)
    """Maximum response length in tokens (paper: 128)."""
    max_prompt_tokens: int = at_least(1, 256)
    """Prompts longer than this keep their last tokens (the most recent turns)."""
    batch_size: int = at_least(1, 64)
    """Sequences decoded together: the memory budget (a KV cache of batch_size x prompt + new tokens)."""
    shared_prefix: bool = True
    """Encode each prompt once and decode its n samples from the shared KV cache; false: plain generate."""


@dataclass
class ScoringConfig:
    batch_size: int = at_least(1, 16)
    """Sequences per forward pass when a trained reward model or a policy's log-probabilities score
    responses (proxy rewards, the log-ratio reward, KL estimates)."""


@dataclass
class EvalConfig:
    samples_per_prompt: int = at_least(1, 1)
    """Responses of pi_init (and, for objective=sft, of pi_SFT) sampled per test prompt."""
    ci_level: float = ruled(0.95, lambda v: 0 < v < 1, "in (0, 1)")
    """Confidence level of the intervals reported for means (t-interval over prompts)."""
    table_rows: int = at_least(0, 16)
    """Rows of the samples table written to disk and W&B."""


@dataclass
class ComputeConfig:
    precision: Precision = Precision.auto
    """Training / sampling precision."""
    device: str = "auto"
    """torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1 ..."""
    threads: int = at_least(0, 0)
    """torch CPU threads; 0 keeps torch's default."""
    low_memory: bool = True
    """Hand freed tensors back to the OS at once (glibc: 64 KiB and up get their own mappings; make run's
    SFT stage peak 4.65 -> 2.88 GiB at the same stage time, a bare SmolLM2 step measured alone 1.4x as
    long), and sample with no other policy loaded (one more load of a policy a later stage needs).
    false: glibc's own policy, policies kept loaded for the next stage. Changes no number."""


@dataclass
class PathsConfig:
    cache_dir: str = MISSING
    """Stage cache (de-quantised models, SFT checkpoints, samples), shared by all runs and sweeps."""
    output_dir: str = MISSING
    """This run's output directory (set by Hydra: outputs/... or multirun/.../N_...)."""


@dataclass
class RunConfig:
    objective: Any = MISSING
    """The alignment objective (conf/objective/): its stages and their settings, typed by the schema of
    the module in afd/objectives/ that runs it."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy pi_init (conf/model/)."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """Prompts and demonstrations (conf/dataset/)."""
    golden: Dict[str, GoldenConfig] = field(default_factory=dict)
    """Golden rewards used only for evaluation, keyed by name (conf/golden/); the first is primary."""
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    """Experiment tracking (conf/logger/)."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Settings of every sampling stage."""
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    """Settings of scoring with trained reward models and policies' log-probabilities."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Settings of the golden evaluation."""
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    """Device and precision."""
    paths: PathsConfig = field(default_factory=PathsConfig)
    """Cache and output locations."""
    experiment: str = "default"
    """Experiment name: the W&B group, so every job of a sweep lands in one group."""
    seed: int = 0
    """Seed of training and sampling."""

    def checks(self) -> list[Problem]:
        return [("golden", bool(self.golden), "at least one golden reward")]
