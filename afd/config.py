"""Typed config schemas for every Hydra group (conf/), registered in the ConfigStore.

A wrong type, an unknown key or an unknown Enum value fails at compose time with the full key path,
before any model loads. The field docstrings below are the config reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from afd.errors import UserError


class Choice(str, Enum):
    """A closed set of config values; prints as its value (run directory names interpolate it)."""

    def __str__(self) -> str:
        return self.value


class Objective(Choice):
    """Alignment objectives; one module each in afd/objectives/ and one file each in conf/objective/."""

    sft = "sft"
    """Forward KL: supervised fine-tuning on the demonstrations (paper section 2)."""
    irl_init_sft = "irl_init_sft"
    """Proposed IRL reward model: pi_init samples (label 0) vs pi_SFT samples (label 1), then BoN."""
    irl_init_demo = "irl_init_demo"
    """IRL reward model: pi_init samples (label 0) vs demonstrations (label 1), then BoN."""
    irl_sft_demo = "irl_sft_demo"
    """IRL reward model: pi_SFT samples (label 0) vs demonstrations (label 1), then BoN."""
    bt_pref = "bt_pref"
    """Preference baseline: Bradley-Terry reward model on chosen/rejected pairs, then BoN."""
    log_ratio = "log_ratio"
    """Training-free reward log pi_SFT(y|x) - log pi_init(y|x) (the optimal Init-SFT logit), then BoN."""
    length = "length"
    """Sanity baseline: BoN by response length in tokens."""
    random = "random"
    """Sanity baseline: BoN by a random score (equals pi_SFT in expectation)."""
    dpo_demo = "dpo_demo"
    """Direct alignment from demonstrations: DPO with demonstration = chosen, a policy sample = rejected,
    re-sampled from the latest policy each iteration (SPIN)."""
    dpo_pref = "dpo_pref"
    """DPO on preference pairs (human chosen/rejected, or the simulated annotator's)."""
    rl_rm = "rl_rm"
    """Policy optimisation (GRPO or RLOO, KL to pi_SFT) on a learned reward: the RL counterpart of BoN."""
    reverse_kl = "reverse_kl"
    """Adversarial imitation (GAIL/AIRL-style): rounds of discriminator (demos vs policy samples) and
    policy optimisation on its transformed logit (paper section 2)."""


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
    """Golden (evaluation-only) rewards; implementations in afd/golden.py."""

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


class RMInit(Choice):
    """Which weights a trained reward model starts from (the paper is silent; default base)."""

    base = "base"
    sft = "sft"


class RMLoss(Choice):
    bce = "bce"
    """Pointwise binary cross-entropy on the logit (the paper's discriminator loss)."""
    bt = "bt"
    """Bradley-Terry on (positive, negative) pairs matched by prompt."""


class PolicyStart(Choice):
    """Which policy a stage starts from."""

    sft = "sft"
    """pi_SFT."""
    init = "init"
    """pi_init (the base model)."""


class SplitName(Choice):
    """A split of the dataset."""

    train = "train"
    """The SFT demonstrations' prompts."""
    rm = "rm"
    """The prompts held for reward models (and preference pairs)."""


class RLAlgorithm(Choice):
    """TRL's online policy-gradient trainers (both stable in TRL 1.x)."""

    grpo = "grpo"
    """Group-relative advantages (GRPOTrainer)."""
    rloo = "rloo"
    """REINFORCE leave-one-out baselines (RLOOTrainer)."""


class Divergence(Choice):
    """The divergence the adversarial policy minimises, through the reward it derives from the
    discriminator's D = sigmoid(logit) (demonstrations = 1)."""

    reverse_kl = "reverse_kl"
    """KL(pi || demo): r = log D - log(1 - D) = logit (AIRL)."""
    js = "js"
    """Jensen-Shannon (the GAN objective) with the non-saturating generator reward r = log D: the
    policy raises the discriminator's belief that its samples are demonstrations."""
    gail = "gail"
    """Jensen-Shannon with the minimax generator reward r = -log(1 - D), as in GAIL: the generator
    lowers log(1 - D), which saturates (gives little gradient) where D is near 0."""


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
    r: int = 32
    """LoRA rank (paper defaults: r=32, alpha=32)."""
    alpha: int = 32
    """LoRA scaling alpha."""
    dropout: float = 0.05
    """Dropout on the LoRA branch."""
    target_modules: str = "all-linear"
    """peft target_modules: "all-linear" or a comma-separated list of module names."""


@dataclass
class ModelConfig:
    name: str = MISSING
    """Short name used in run names and cache keys (e.g. smollm2_135m, gpt2)."""
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
    max_length: int = 512
    """Maximum prompt + response tokens in training; must not exceed the model's position limit."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """Optional LoRA adapters."""


@dataclass
class DatasetConfig:
    name: str = MISSING
    """Short name used in run names and cache keys."""
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
    context_turns: int = 3
    """chitchat: number of preceding chat turns that form the prompt."""
    min_demo_score: float = 0.5
    """chitchat: keep a human reply as a demonstration only if its upbeat (VADER) score is at least this."""
    train_size: int = 512
    """Maximum number of examples in the SFT (train) split."""
    rm_size: int = 128
    """Maximum number of examples in the reward-model split (prompts for RM training samples)."""
    test_size: int = 64
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
    max_length: int = 512
    """rm only: truncate prompt + response to this many tokens (keeping the end)."""
    batch_size: int = 16
    """rm only: sequences scored per forward pass."""


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
class SFTConfig:
    learning_rate: float = 5e-5
    """AdamW learning rate."""
    num_train_epochs: float = 1.0
    """Epochs over the train split (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Optimizer steps; -1 trains for num_train_epochs."""
    per_device_train_batch_size: int = 8
    """Examples per device per step."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step."""
    logging_steps: int = 5
    """Log train/loss every this many steps."""
    trl_args: Dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments passed verbatim to trl.SFTConfig (e.g. warmup_steps, lr_scheduler_type)."""


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    """Sampling temperature (paper: 1.0)."""
    top_p: float = 0.95
    """Nucleus sampling mass (paper: 0.95)."""
    max_new_tokens: int = 48
    """Maximum response length in tokens (paper: 128)."""
    max_prompt_tokens: int = 256
    """Prompts longer than this keep their last tokens (the most recent turns)."""
    batch_size: int = 64
    """Sequences decoded together: the memory budget (a KV cache of batch_size x prompt + new tokens)."""
    shared_prefix: bool = True
    """Encode each prompt once and decode its n samples from the shared KV cache; false: plain generate."""


@dataclass
class RMConfig:
    init: RMInit = RMInit.base
    """Initial weights of the reward model: the base model or pi_SFT, plus a fresh scalar head."""
    loss: RMLoss = RMLoss.bce
    """bce (pointwise, paper) or bt (pairs matched by prompt; bt_pref always uses bt)."""
    samples_per_prompt: int = 2
    """Samples per RM-training prompt from each policy the variant needs (paper: 10)."""
    heldout_fraction: float = 0.2
    """Fraction of RM-training prompts held out to measure the reward model's accuracy."""
    flip_rate: float = 0.1
    """bt_pref on data without human preferences: probability that the simulated annotator (the
    primary golden reward) flips a label; the paper's noisy-label motivation made measurable."""
    human_flip_rate: float = 0.0
    """Probability of flipping a human chosen/rejected label (HH): synthetic noise on top of the humans'
    own, for the label-noise ablation on a task with human preferences."""
    learning_rate: float = 5e-5
    """AdamW learning rate."""
    num_train_epochs: float = 1.0
    """Epochs over the RM training examples (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Optimizer steps; -1 trains for num_train_epochs."""
    per_device_train_batch_size: int = 8
    """Examples (bce) or pairs (bt) per device per step."""
    logging_steps: int = 5
    """Log rm/loss every this many steps."""
    batch_size: int = 16
    """Sequences per forward pass when scoring with the trained reward model."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """Optional LoRA adapters for the reward model (task SEQ_CLS)."""
    trl_args: Dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments passed verbatim to the trainer config."""


@dataclass
class BoNConfig:
    pool_size: int = 16
    """M: samples of pi_SFT per test prompt; every N is evaluated exactly on this one pool (paper: 500)."""
    n_grid: List[int] = field(default_factory=list)
    """Values of N; empty means 1, 2, 4, ... up to pool_size."""


@dataclass
class DPOSettings:
    iterations: int = 1
    """dpo_demo: rounds of (sample rejected responses from the latest policy, DPO); 1 = plain DPO."""
    rejected_from: PolicyStart = PolicyStart.sft
    """dpo_demo: the policy whose samples are the rejected responses of the first iteration."""
    split: SplitName = SplitName.rm
    """dpo_demo: the split whose prompts and demonstrations form the pairs (dpo_pref uses the same
    preference pairs as bt_pref, on the rm split)."""
    beta: float = 0.1
    """DPO inverse temperature: strength of the implicit KL to the reference policy."""
    learning_rate: float = 5e-6
    """AdamW learning rate."""
    num_train_epochs: float = 1.0
    """Epochs over the pairs per iteration (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Optimizer steps per iteration; -1 trains for num_train_epochs."""
    per_device_train_batch_size: int = 4
    """Pairs per device per step."""
    logging_steps: int = 5
    """Log dpo metrics every this many steps."""
    trl_args: Dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments passed verbatim to trl.DPOConfig (e.g. loss_type, label_smoothing)."""


@dataclass
class RLSettings:
    algorithm: RLAlgorithm = RLAlgorithm.grpo
    """grpo or rloo."""
    reward: Objective = Objective.irl_init_sft
    """rl_rm: the reward to optimise, named by the objective that learns it (an IRL variant, bt_pref or
    log_ratio); the reward model is the same cached one that objective's Best-of-N uses."""
    beta: float = 0.05
    """KL coefficient to the reference policy (pi_SFT)."""
    num_generations: int = 4
    """Completions per prompt (the group of the advantage estimate)."""
    max_steps: int = 8
    """Optimizer steps."""
    per_device_train_batch_size: int = 4
    """Completions per device per step; a multiple of num_generations."""
    learning_rate: float = 1e-6
    """AdamW learning rate."""
    logging_steps: int = 1
    """Log rl metrics every this many steps."""
    trl_args: Dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments passed verbatim to trl.GRPOConfig / trl.RLOOConfig."""


@dataclass
class AdversarialSettings:
    rounds: int = 2
    """Rounds of (sample the policy, update the discriminator, update the policy)."""
    start: PolicyStart = PolicyStart.sft
    """The policy the rounds start from (pi_SFT or pi_init); it is also the KL reference."""
    divergence: Divergence = Divergence.reverse_kl
    """Which divergence, through the reward transform of the discriminator's output."""
    discriminator_steps: int = -1
    """Discriminator optimizer steps per round; -1 uses rm.max_steps / rm.num_train_epochs. The
    discriminator is warm-started from the previous round's (round 1: rm.init)."""
    probe_prompts: int = 16
    """Test prompts whose golden reward is logged after every round (adv/golden_probe)."""


@dataclass
class StabilityConfig:
    max_abs_reward: float = 1000.0
    """Stop training when a logged reward or reward margin exceeds this in absolute value."""
    max_kl: float = 1000.0
    """Stop training when a logged KL to the reference exceeds this."""


@dataclass
class EvalConfig:
    samples_per_prompt: int = 1
    """Responses sampled per test prompt for each evaluated policy."""
    ci_level: float = 0.95
    """Confidence level of the intervals reported for means (t-interval over prompts)."""
    table_rows: int = 16
    """Rows of the samples table written to disk and W&B."""
    policy_samples_per_prompt: int = 4
    """Samples per test prompt of a trained final policy (DPO, RL): its golden reward, win rate
    against pi_SFT and Monte-Carlo KL to pi_SFT."""


@dataclass
class ComputeConfig:
    precision: Precision = Precision.auto
    """Training / sampling precision."""
    device: str = "auto"
    """torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1 ..."""
    threads: int = 0
    """torch CPU threads; 0 keeps torch's default."""


@dataclass
class PathsConfig:
    cache_dir: str = MISSING
    """Stage cache (de-quantised models, SFT checkpoints, samples), shared by all runs and sweeps."""
    output_dir: str = MISSING
    """This run's output directory (set by Hydra: outputs/... or multirun/.../N_...)."""


@dataclass
class ObjectiveConfig:
    name: Objective = MISSING
    """Which objective runs (see Objective)."""


@dataclass
class RunConfig:
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    """The alignment objective (conf/objective/)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base policy pi_init (conf/model/)."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """Prompts and demonstrations (conf/dataset/)."""
    golden: Dict[str, GoldenConfig] = field(default_factory=dict)
    """Golden rewards used only for evaluation, keyed by name (conf/golden/); the first is primary."""
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    """Experiment tracking (conf/logger/)."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Settings of the SFT stage."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Settings of every sampling stage."""
    rm: RMConfig = field(default_factory=RMConfig)
    """Settings of the reward-model stage (IRL variants and the preference baseline)."""
    bon: BoNConfig = field(default_factory=BoNConfig)
    """Settings of the Best-of-N stage."""
    dpo: DPOSettings = field(default_factory=DPOSettings)
    """Settings of the DPO objectives (dpo_demo, dpo_pref)."""
    rl: RLSettings = field(default_factory=RLSettings)
    """Settings of policy optimisation (rl_rm)."""
    adversarial: AdversarialSettings = field(default_factory=AdversarialSettings)
    """Settings of reverse_kl (policy steps per round: rl.max_steps)."""
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    """Bounds past which a policy-training run is stopped as diverged."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Settings of the evaluation stage."""
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    """Device and precision."""
    paths: PathsConfig = field(default_factory=PathsConfig)
    """Cache and output locations."""
    experiment: str = "default"
    """Experiment name: the W&B group, so every job of a sweep lands in one group."""
    seed: int = 0
    """Seed of training and sampling."""


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore so that conf/config.yaml can extend them."""
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Convert the composed config to typed dataclasses once; nothing below main sees a DictConfig."""
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


class ConfigError(UserError):
    """A config value that types alone cannot rule out; the message names the key."""


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected {expected}")


def _at_least(key: str, value: float, low: float) -> None:
    _check(value >= low, key, value, f">= {low}")


def _positive(key: str, value: float) -> None:
    _check(value > 0, key, value, "> 0")


def _rate(key: str, value: float) -> None:
    _check(0 <= value <= 1, key, value, "in [0, 1]")


def _check_training(key: str, s: Any) -> None:
    """The fields every trainer has: a positive learning rate, a positive budget, batches of at least one."""
    _positive(f"{key}.learning_rate", s.learning_rate)
    _check(s.max_steps == -1 or s.max_steps >= 1, f"{key}.max_steps", s.max_steps, "-1 (use epochs) or >= 1")
    if hasattr(s, "num_train_epochs") and s.max_steps == -1:
        _positive(f"{key}.num_train_epochs", s.num_train_epochs)
    _at_least(f"{key}.per_device_train_batch_size", s.per_device_train_batch_size, 1)
    _at_least(f"{key}.logging_steps", s.logging_steps, 1)


def _check_lora(key: str, lora: LoraSettings) -> None:
    if lora.enabled:
        _at_least(f"{key}.r", lora.r, 1)
        _positive(f"{key}.alpha", lora.alpha)
        _check(0 <= lora.dropout < 1, f"{key}.dropout", lora.dropout, "in [0, 1)")


def validate(cfg: RunConfig) -> None:
    """Range checks that must fail at start-up, not after an hour of training: every number in range,
    every combination the pipeline can run. Paths are checked by afd.preflight."""
    d = cfg.dataset
    _at_least("dataset.train_size", d.train_size, 1)
    _at_least("dataset.test_size", d.test_size, 1)
    _at_least("dataset.rm_size", d.rm_size, 0)
    _at_least("dataset.context_turns", d.context_turns, 1)
    _at_least("model.max_length", cfg.model.max_length, 2)
    _check_lora("model.lora", cfg.model.lora)
    _check(bool(cfg.golden), "golden", list(cfg.golden), "at least one golden reward")
    for name, g in cfg.golden.items():
        _at_least(f"golden.{name}.max_length", g.max_length, 2)
        _at_least(f"golden.{name}.batch_size", g.batch_size, 1)
        if g.kind is GoldenKind.rm:
            _check(
                bool(g.name_or_path), f"golden.{name}.name_or_path", g.name_or_path, "a hub id or directory"
            )
    sp = cfg.sampling
    _positive("sampling.temperature", sp.temperature)
    _check(0 < sp.top_p <= 1, "sampling.top_p", sp.top_p, "in (0, 1]")
    _at_least("sampling.max_new_tokens", sp.max_new_tokens, 1)
    _at_least("sampling.max_prompt_tokens", sp.max_prompt_tokens, 1)
    _at_least("sampling.batch_size", sp.batch_size, 1)
    _check_training("sft", cfg.sft)
    _at_least("sft.gradient_accumulation_steps", cfg.sft.gradient_accumulation_steps, 1)
    _check_trl_args("sft.trl_args", cfg.sft.trl_args, "SFTConfig")
    rm = cfg.rm
    _check_training("rm", rm)
    _at_least("rm.samples_per_prompt", rm.samples_per_prompt, 1)
    _check(0 <= rm.heldout_fraction < 1, "rm.heldout_fraction", rm.heldout_fraction, "in [0, 1)")
    _rate("rm.flip_rate", rm.flip_rate)
    _rate("rm.human_flip_rate", rm.human_flip_rate)
    _at_least("rm.batch_size", rm.batch_size, 1)
    _check_lora("rm.lora", rm.lora)
    _check_trl_args("rm.trl_args", rm.trl_args, "RewardConfig")
    _at_least("bon.pool_size", cfg.bon.pool_size, 1)
    bad_n = [n for n in cfg.bon.n_grid if not 1 <= n <= cfg.bon.pool_size]
    _check(not bad_n, "bon.n_grid", cfg.bon.n_grid, f"values in [1, bon.pool_size={cfg.bon.pool_size}]")
    dpo = cfg.dpo
    _check_training("dpo", dpo)
    _check_trl_args("dpo.trl_args", dpo.trl_args, "DPOConfig")
    _at_least("dpo.iterations", dpo.iterations, 1)
    _positive("dpo.beta", dpo.beta)
    rl = cfg.rl
    _check_training("rl", rl)
    _check_trl_args(
        "rl.trl_args", rl.trl_args, "GRPOConfig" if rl.algorithm is RLAlgorithm.grpo else "RLOOConfig"
    )
    _at_least("rl.beta", rl.beta, 0)
    _check(
        rl.num_generations >= 2, "rl.num_generations", rl.num_generations, ">= 2 (a group needs a baseline)"
    )
    _check(
        rl.per_device_train_batch_size % rl.num_generations == 0,
        "rl.per_device_train_batch_size",
        rl.per_device_train_batch_size,
        f"a multiple of rl.num_generations={rl.num_generations}",
    )
    _check(
        rl.reward
        not in {Objective.sft, Objective.dpo_demo, Objective.dpo_pref, Objective.rl_rm, Objective.reverse_kl},
        "rl.reward",
        rl.reward.value,
        "an objective that learns a reward (irl_*, bt_pref, log_ratio, length, random)",
    )
    adv = cfg.adversarial
    _at_least("adversarial.rounds", adv.rounds, 1)
    _at_least("adversarial.probe_prompts", adv.probe_prompts, 1)
    _check(
        adv.discriminator_steps == -1 or adv.discriminator_steps >= 1,
        "adversarial.discriminator_steps",
        adv.discriminator_steps,
        "-1 (use rm's budget) or >= 1",
    )
    if cfg.objective.name is Objective.reverse_kl:
        # With LoRA, TRL regularises towards the model under the adapters: the round's own start.
        _check(
            adv.rounds == 1 or not cfg.model.lora.enabled,
            "adversarial.rounds",
            adv.rounds,
            "1 with model.lora.enabled=true (later rounds regularise towards adversarial.start, which "
            "LoRA cannot; set model.lora.enabled=false)",
        )
    _positive("stability.max_abs_reward", cfg.stability.max_abs_reward)
    _positive("stability.max_kl", cfg.stability.max_kl)
    ev = cfg.eval
    _at_least("eval.samples_per_prompt", ev.samples_per_prompt, 1)
    _check(0 < ev.ci_level < 1, "eval.ci_level", ev.ci_level, "in (0, 1)")
    _at_least("eval.table_rows", ev.table_rows, 0)
    _at_least("eval.policy_samples_per_prompt", ev.policy_samples_per_prompt, 1)
    _at_least("compute.threads", cfg.compute.threads, 0)
    if cfg.objective.name not in {Objective.sft}:
        # Every other objective trains a reward or pairs on the rm split.
        _at_least("dataset.rm_size", d.rm_size, 1)


# Set by afd itself from typed knobs; passing them again through trl_args would be ambiguous.
AFD_SET_TRAINER_ARGS = frozenset(
    {
        "output_dir",
        "seed",
        "data_seed",
        "use_cpu",
        "bf16",
        "fp16",
        "report_to",
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "logging_steps",
        "max_length",
    }
)


def _check_trl_args(key: str, args: Dict[str, Any], trl_config: str) -> None:
    import dataclasses

    import trl

    known = {f.name for f in dataclasses.fields(getattr(trl, trl_config))}
    for name in args:
        _check(name in known, f"{key}.{name}", args[name], f"a field of trl.{trl_config}")
        _check(
            name not in AFD_SET_TRAINER_ARGS,
            f"{key}.{name}",
            args[name],
            "an argument afd does not set itself",
        )
