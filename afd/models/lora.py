"""LoRA adapters (peft) for policies and reward models."""

from __future__ import annotations

from afd.config.run import LoraSettings


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
