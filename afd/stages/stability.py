"""Stopping a diverging policy-training run: a NaN loss, or a reward or KL past a configured bound,
ends training with a clear message instead of silently training on garbage."""

from __future__ import annotations

import math

from transformers import TrainerCallback

from afd.config.stages import StabilitySettings


class DivergenceError(RuntimeError):
    """Training diverged; the message names the metric, its value, the bound and the last good policy."""


def check_logs(logs: dict[str, float], bounds: StabilitySettings) -> str | None:
    """Why these logged metrics mean divergence, or None. Keys follow TRL's names (loss, rewards/...,
    reward, kl)."""
    for key, value in logs.items():
        if not isinstance(value, (int, float)):
            continue
        watched = key == "loss" or "reward" in key or key.endswith("kl")
        if watched and not math.isfinite(value):
            return f"{key} = {value}"
        if "reward" in key and abs(value) > bounds.max_abs_reward:
            return f"|{key}| = {abs(value):.4g} > stability.max_abs_reward = {bounds.max_abs_reward}"
        if key.endswith("kl") and value > bounds.max_kl:
            return f"{key} = {value:.4g} > stability.max_kl = {bounds.max_kl}"
    return None


class DivergenceGuard(TrainerCallback):
    """Raises DivergenceError from the trainer's logging step; nothing of the diverged run is cached,
    so the last good policy (the previous stage or iteration, named in the message) stays in use."""

    def __init__(self, bounds: StabilitySettings, stage: str, last_good: str):
        self.bounds, self.stage, self.last_good = bounds, stage, last_good

    def on_log(self, args, state, control, logs=None, **kwargs):
        reason = check_logs(logs or {}, self.bounds)
        if reason is not None:
            raise DivergenceError(
                f"{self.stage} diverged at step {state.global_step}: {reason}. Training stopped; "
                f"the last good policy is {self.last_good}. Lower the learning rate or raise the bound."
            )
