"""The schemas of settings several objectives share: one trainer-settings shape for every stage that
trains, the SFT stage, the (negative, positive) pairs of the paper's "RM choice" table, RL, and the
evaluation and stability guard of trained policies. Objectives compose them (conf/objective/*.yaml pull
their budgets from conf/stage/<kind>/<budget>.yaml); what only one objective uses lives in its module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from afd.config.checks import Problem, at_least, positive, rate, ruled, steps_or_epochs, trl_arg_problems
from afd.config.run import Choice, LoraSettings


@dataclass
class TrainerSettings:
    """The fields every TRL trainer has, typed and checked, plus a pass-through for the rest."""

    learning_rate: float = positive(5e-5)
    """AdamW learning rate."""
    num_train_epochs: float = positive(1.0)
    """Epochs over the training data (ignored when max_steps > 0)."""
    max_steps: int = steps_or_epochs()
    """Optimizer steps; -1 trains for num_train_epochs."""
    per_device_train_batch_size: int = at_least(1, 8)
    """Examples per device per step."""
    gradient_accumulation_steps: int = at_least(1, 1)
    """Micro-batches per optimizer step."""
    logging_steps: int = at_least(1, 5)
    """Log the training loss every this many steps."""
    save_steps: int = at_least(0, 200)
    """Checkpoint (model, optimizer, scheduler, RNG) every this many steps into the stage's partial cache
    directory, so that a run killed mid-stage resumes from the last checkpoint; 0 never checkpoints.
    The checkpoints are deleted once the entry is published."""
    activation_checkpointing: bool = True
    """Recompute each layer's activations in the backward pass instead of keeping them: activation
    memory of one layer instead of all, for about a fifth more time per step (SmolLM2 SFT at batch 8 on
    CPU: peak 3.6 GB instead of 5.5 GB, the stage 1.23x slower; README, Performance). On by default so
    that the default run fits a laptop; turn it off for speed where memory is plentiful."""
    trl_args: Dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments passed verbatim to the stage's TRL config (e.g. warmup_steps,
    lr_scheduler_type); afd's own typed knobs may not be repeated here."""

    def as_trainer_args(self) -> dict[str, Any]:
        """The keyword arguments of a transformers / TRL training config."""
        return {
            "learning_rate": self.learning_rate,
            "num_train_epochs": self.num_train_epochs,
            "max_steps": self.max_steps,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "logging_steps": self.logging_steps,
            **self.trl_args,
        }


@dataclass
class SFTSettings:
    """The SFT stage (forward KL): every objective starts from pi_SFT."""

    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    """TRL SFTTrainer settings (loss on the demonstration tokens only)."""
    group_by_length: bool = True
    """Batch demonstrations of similar length together: less padding (measured 1.6x the training tokens/s
    of random batches on a 2-core CPU; TRL's padding-free packing was slower there, its attention masks
    span the whole pack)."""
    validation_fraction: float = ruled(0.0, lambda v: 0 <= v < 1, "in [0, 1)")
    """Share of the train split's prompts held out of training to measure the loss on after every epoch
    (sft/validation_loss), for choosing SFT settings; 0 trains on all of it."""

    def checks(self) -> list[Problem]:
        return list(trl_arg_problems(self.trainer.trl_args, "SFTConfig", "trainer.trl_args"))


class Source(Choice):
    """Where the responses of one side of a pair come from (the paper's "RM choice" table)."""

    init = "init"
    """Samples of pi_init (the configured model before any training)."""
    sft = "sft"
    """Samples of pi_SFT."""
    demo = "demo"
    """The demonstration."""
    policy = "policy"
    """Samples of the policy being trained: SPIN's latest iterate (pi_SFT at iteration 1), the adversarial
    round's policy."""
    chosen = "chosen"
    """The preferred response of a preference pair (human, or the simulated annotator's)."""
    rejected = "rejected"
    """The other response of a preference pair."""


PREFERENCE_SOURCES = (Source.chosen, Source.rejected)


@dataclass
class LabelNoise:
    """Flipped preference labels (the paper's noisy-label motivation, made measurable)."""

    flip_rate: float = rate(0.1)
    """Without human preferences: probability that the simulated annotator (the primary golden reward)
    flips a label."""
    human_flip_rate: float = rate(0.0)
    """With human preferences (HH): probability of flipping a chosen/rejected label, on top of the
    humans' own noise."""


@dataclass
class PairsConfig:
    """(negative, positive) response pairs matched by prompt on the align split: the data of a reward
    model (label 0 / label 1) or of DPO (rejected / chosen)."""

    negatives: Source = Source.init
    """Where the negative (label 0, rejected) responses come from."""
    positives: Source = Source.sft
    """Where the positive (label 1, chosen) responses come from."""
    samples_per_prompt: int = at_least(1, 2)
    """Samples per align prompt from each policy side (paper: 10); a demonstration is one response.
    Simulated preferences label consecutive pairs of this many pi_SFT samples."""
    noise: Optional[LabelNoise] = None
    """Preference pairs only: label noise (null for pairs of samples and demonstrations)."""

    def is_preference(self) -> bool:
        return self.positives in PREFERENCE_SOURCES

    def checks(self) -> list[Problem]:
        preference = self.is_preference() or self.negatives in PREFERENCE_SOURCES
        return [
            ("negatives", self.negatives is not self.positives, "a different source than positives"),
            (
                "negatives",
                not preference or (self.positives, self.negatives) == (Source.chosen, Source.rejected),
                "rejected when positives=chosen (preference pairs)",
            ),
            ("noise", preference or self.noise is None, "null unless the pairs are preferences"),
            (
                "samples_per_prompt",
                not preference or self.samples_per_prompt >= 2,
                ">= 2 for preferences: a simulated annotator compares pairs of pi_SFT samples",
            ),
        ]


class RLAlgorithm(Choice):
    """TRL's online policy-gradient trainers (both stable in TRL 1.x)."""

    grpo = "grpo"
    """Group-relative advantages (GRPOTrainer)."""
    rloo = "rloo"
    """REINFORCE leave-one-out baselines (RLOOTrainer)."""


@dataclass
class RLSettings:
    """Online policy optimisation of a reward with a KL penalty (GRPO or RLOO)."""

    algorithm: RLAlgorithm = RLAlgorithm.grpo
    """grpo or rloo."""
    beta: float = at_least(0.0, 0.05)
    """KL coefficient to the reference policy; 0 drops the KL term."""
    num_generations: int = at_least(2, 4)
    """Completions per prompt (the group of the advantage estimate; >= 2 for a baseline)."""
    trainer: TrainerSettings = field(
        default_factory=lambda: TrainerSettings(
            learning_rate=1e-6, max_steps=8, per_device_train_batch_size=4, logging_steps=1
        )
    )
    """Trainer settings; per_device_train_batch_size counts completions."""

    def checks(self) -> list[Problem]:
        trl_config = "GRPOConfig" if self.algorithm is RLAlgorithm.grpo else "RLOOConfig"
        return [
            (
                "trainer.per_device_train_batch_size",
                self.trainer.per_device_train_batch_size % self.num_generations == 0,
                f"a multiple of num_generations={self.num_generations}",
            ),
            *trl_arg_problems(self.trainer.trl_args, trl_config, "trainer.trl_args"),
        ]


@dataclass
class StabilitySettings:
    """Bounds past which a policy-training run is stopped as diverged."""

    max_abs_reward: float = positive(1000.0)
    """Stop training when a logged reward or reward margin exceeds this in absolute value."""
    max_kl: float = positive(1000.0)
    """Stop training when a logged KL to the reference exceeds this."""


@dataclass
class PolicyEvalSettings:
    """How a trained final policy (DPO, RL, adversarial) is judged against pi_SFT."""

    samples_per_prompt: int = at_least(1, 4)
    """Samples per test prompt of the trained policy: its golden reward, win rate against pi_SFT and
    Monte-Carlo KL to pi_SFT."""
    sft_samples_per_prompt: int = at_least(1, 16)
    """Samples per test prompt of pi_SFT it is compared with (the same pool Best-of-N objectives draw
    at the same size, so both share the cache)."""


class RMLoss(Choice):
    bce = "bce"
    """Pointwise binary cross-entropy on the logit (the paper's discriminator loss)."""
    bt = "bt"
    """Bradley-Terry on the (positive, negative) pairs."""


class RMWeights(Choice):
    """Which policy's weights a reward model starts from, under a fresh scalar head (the paper is silent;
    default init)."""

    init = "init"
    """pi_init's."""
    sft = "sft"
    """pi_SFT's."""


@dataclass
class RewardModelConfig:
    """A learned reward: a sequence classifier trained on pairs; reward = its logit (paper section 3)."""

    pairs: PairsConfig = field(default_factory=PairsConfig)
    """Its training data: label-0 and label-1 responses (the paper's "RM choice" table)."""
    loss: RMLoss = RMLoss.bce
    """bce (pointwise, the paper's) or bt (Bradley-Terry on the pairs)."""
    weights: RMWeights = RMWeights.init
    """The policy whose weights the classifier starts from."""
    heldout_fraction: float = ruled(0.2, lambda v: 0 <= v < 1, "in [0, 1)")
    """Fraction of align prompts held out to measure the reward model's accuracy."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """Optional LoRA adapters for the classifier (task SEQ_CLS)."""
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    """Trainer settings; per_device_train_batch_size counts examples (bce) or pairs (bt). Activation
    checkpointing keeps the prompt's KV cache, which each of its responses continues
    (afd/stages/classifier_trainer.py)."""

    def checks(self) -> list[Problem]:
        # Both losses train with a transformers Trainer (afd/stages/classifier_trainer.py).
        return [
            *trl_arg_problems(self.trainer.trl_args, "TrainingArguments", "trainer.trl_args"),
        ]


@dataclass
class BestOfNSettings:
    """Best-of-N on one pool of pi_SFT samples per test prompt, exact for every N (afd/analysis/bon.py)."""

    pool_size: int = at_least(1, 16)
    """M: samples of pi_SFT per test prompt; every N is evaluated exactly on this one pool (paper: 500)."""
    n_grid: List[int] = field(default_factory=list)
    """Values of N; empty means 1, 2, 4, ... up to pool_size."""

    def checks(self) -> list[Problem]:
        ok = all(1 <= n <= self.pool_size for n in self.n_grid)
        return [("n_grid", ok, f"values in [1, pool_size={self.pool_size}]")]


class SplitName(Choice):
    """A split of the dataset that pairs are drawn on."""

    train = "train"
    """The SFT demonstrations' prompts."""
    align = "align"
    """The prompts held for the stages after SFT."""


@dataclass
class DPOSettings:
    """DPO (TRL's DPOTrainer) against the policy it starts from."""

    beta: float = positive(0.1)
    """DPO inverse temperature: strength of the implicit KL to the reference policy."""
    iterations: int = at_least(1, 1)
    """Rounds of (draw the pairs, DPO); with negatives=policy each round's rejected responses are samples
    of the latest policy, which is also its reference (SPIN). 1 = plain DPO."""
    split: SplitName = SplitName.align
    """The split whose prompts (and demonstrations) form the pairs; preferences exist on align only."""
    trainer: TrainerSettings = field(
        default_factory=lambda: TrainerSettings(learning_rate=5e-6, per_device_train_batch_size=4)
    )
    """Trainer settings; per_device_train_batch_size counts pairs."""

    def checks(self) -> list[Problem]:
        return list(trl_arg_problems(self.trainer.trl_args, "DPOConfig", "trainer.trl_args"))
