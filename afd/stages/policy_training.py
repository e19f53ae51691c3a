"""What every policy-training stage (sft, dpo, rl) does around its TRL trainer: train a copy of the
starting policy against an explicit KL reference, merge LoRA, save weights + tokenizer + log history into
a cache entry, and hand on the policy in that entry.

The trained policy is always read back from its entry, never handed on as the trainer's object: TRL
patches the model it trains (a fused LM-head forward that closes over the model's original forward), and
a deep copy of a patched model still runs the *original* model's forward, so a later stage "training" a
copy of it would train nothing. Reading the entry also makes a cold run and a warm one the same code path.
"""

from __future__ import annotations

import copy
import gc
import json
import shutil
from pathlib import Path
from typing import Any, Callable

from afd.models.lora import apply_lora
from afd.models.policies import PolicyHandle, release_policies, saved_policy
from afd.runtime.cache import plain
from afd.runtime.context import RunContext
from afd.runtime.distributed import is_main_process, world_size
from afd.stages.fused_head import fused_head_for
from afd.stages.trainer_args import last_checkpoint

ADAPTER = "adapter"
"""A LoRA-trained policy's entry keeps its adapters here (the merged weights are the entry itself)."""
ADAPTER_BASE = "adapter_base.json"
"""The spec of the policy the adapters were trained on top of."""

TrainerFactory = Callable[[Any, Any, Path], Any]
"""(model to train, tokenizer, output dir) -> a TRL trainer."""


def train_policy_stage(
    ctx: RunContext,
    stage: str,
    spec: dict[str, Any],
    start: PolicyHandle,
    name: str,
    make_trainer: TrainerFactory,
    reference: PolicyHandle | None = None,
) -> PolicyHandle:
    """The policy `name` trained from `start` by `make_trainer`, cached under `stage` by `spec` plus the
    reference's spec. `reference` (default: `start`) is the policy a KL-regularised trainer (DPO, GRPO,
    RLOO) regularises towards; trainers without a KL term ignore it."""
    lora = ctx.cfg.model.lora
    reference = reference or start
    # With LoRA, TRL regularises towards the model under the adapters. To regularise towards a reference
    # other than `start` (the adversarial rounds after the first), the adapters sit on the reference and
    # continue from `start`'s own adapters, which were trained on top of that same reference.
    continues_adapter = lora.enabled and reference is not start
    if (
        continues_adapter
        and json.loads((Path(start.weights_dir()) / ADAPTER_BASE).read_text()) != reference.spec
    ):
        raise ValueError(
            f"{name}: with LoRA, a KL reference ({reference.name}) other than the starting policy "
            f"({start.name}) needs {start.name}'s adapters to have been trained on that reference"
        )

    def build(out: Path) -> None:
        under, tokenizer = (reference if continues_adapter else start).get()
        # The loaded policies stay intact: later stages sample them, score them, or use them as reference.
        policy = copy.deepcopy(under)
        # No trainer reads the loaded originals (TRL loads its KL reference from disk, see below): they
        # are dropped while the copy trains and read back from their files if a later stage needs them
        # (SmolLM2: 0.54 GB apiece less at the stage's peak, for a second load of about two seconds).
        del under
        release_policies(ctx)
        # TRL 1.16 builds the frozen KL reference by loading `config._name_or_path` when it is given none
        # (DPOTrainer without ref_model and PEFT; GRPOTrainer and RLOOTrainer whenever beta > 0). That
        # path is wherever the weights were last loaded from: the base model for a pi_SFT trained in this
        # process, the cache entry for one loaded from it. Point it at the reference's weights on purpose.
        policy.config._name_or_path = reference.weights_dir()
        if continues_adapter:
            from peft import PeftModel

            policy = PeftModel.from_pretrained(
                policy, str(Path(start.weights_dir()) / ADAPTER), is_trainable=True
            )
        else:
            policy = apply_lora(policy, lora)
        with fused_head_for(ctx.device):
            trainer = make_trainer(policy, tokenizer, out)
            trainer.train(resume_from_checkpoint=last_checkpoint(out))
        if is_main_process() and lora.enabled:
            # The adapters alone, and the policy they sit on, for a later stage that continues them.
            trainer.model.save_pretrained(out / ADAPTER)
            (out / ADAPTER_BASE).write_text(
                json.dumps(plain(reference.spec if continues_adapter else start.spec))
            )
        # Merged weights load like any model: sampling and later stages need no peft.
        trained = trainer.model.merge_and_unload() if lora.enabled else trainer.model
        if is_main_process():  # the copy the cache publishes
            trained.save_pretrained(out)
            tokenizer.save_pretrained(out)
            (out / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))
            shutil.rmtree(out / "trainer", ignore_errors=True)  # checkpoints: for resuming only

    full_spec = {
        **spec,
        "reference": reference.spec,
        "lora": lora,
        "max_length": ctx.cfg.model.max_length,
        # The global batch is the per-device batch times the processes: another world size, other weights.
        "processes": world_size(),
    }
    entry = ctx.cache.get_or_build(stage, full_spec, build, resumable=True)
    gc.collect()  # the trainer, its optimizer state and its patched model
    return saved_policy(ctx, name, entry, {stage: entry.name})


def train_log(policy: PolicyHandle) -> list[dict[str, Any]]:
    """The trainer's logged steps (entries with a loss) of a policy a stage trained."""
    return [h for h in json.loads((policy.path / "train_log.json").read_text()) if "loss" in h]


def log_training(ctx: RunContext, policy: PolicyHandle, prefix: str) -> None:
    """The training curve of a (possibly cached) stage, into the run's tracker under `prefix/`."""
    for h in train_log(policy):
        ctx.tracker.log({f"{prefix}/{k}": v for k, v in h.items() if isinstance(v, (int, float))})
