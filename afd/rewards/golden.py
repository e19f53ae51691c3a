"""Golden rewards: scorers used only to evaluate policies, never to train them (paper section 3, step 6)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from afd.config.run import GoldenConfig, GoldenKind, RMTextFormat
from afd.rewards.classifier import ClassifierReward
from afd.rewards.reward import Messages, Reward, check_pairs
from afd.runtime.context import RunContext

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


def vader_compound(texts: Sequence[str]) -> np.ndarray:
    """VADER compound sentiment in [-1, 1] for each text (the embedded `upbeat` golden reward)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float64)


class Upbeat:
    """VADER compound sentiment of the response alone, in [-1, 1]."""

    def __init__(self, name: str = "upbeat"):
        self.name = name

    def score(self, prompts: list[Messages], responses: list[str]) -> np.ndarray:
        check_pairs(prompts, responses)
        return vader_compound(responses)


class Harmless:
    """1 - P(offensive) of the response from alt-profanity-check's sklearn classifier, in [0, 1]."""

    def __init__(self, name: str = "harmless"):
        self.name = name
        # alt-profanity-check installs the module `profanity_check`; importing it unpickles the model.
        from profanity_check import predict_prob

        self._predict_prob = predict_prob

    def score(self, prompts: list[Messages], responses: list[str]) -> np.ndarray:
        check_pairs(prompts, responses)
        if not responses:
            return np.zeros(0, dtype=np.float64)
        return 1.0 - np.asarray(self._predict_prob(list(responses)), dtype=np.float64)


class RewardModelGolden(ClassifierReward):
    """A sequence-classification golden reward model (by hub id or path); score = logit 0.

    Inputs longer than cfg.max_length keep their last tokens, where the response is. Loaded in fp32
    by default so that scores compare across runs and devices.
    """

    def __init__(self, name: str, cfg: GoldenConfig, device: torch.device, dtype: torch.dtype | None = None):
        import torch

        from afd.models.loading import load_reward_model

        if cfg.name_or_path is None:
            raise ValueError(f"golden.{name}.name_or_path must be set for kind=rm")
        self.cfg = cfg
        model, tokenizer = load_reward_model(
            cfg.name_or_path, f"golden.{name}.name_or_path", device, dtype or torch.float32
        )
        if cfg.text_format == RMTextFormat.chat_template and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"golden.{name}.text_format=chat_template but {cfg.name_or_path} has no chat template; "
                "use text_format=hh"
            )
        max_length = cfg.max_length
        limit = getattr(model.config, "max_position_embeddings", None) or getattr(
            model.config, "n_positions", None
        )
        if isinstance(limit, int) and max_length > limit:
            logger.warning(
                "golden.%s.max_length=%d exceeds the reward model's %d positions; using %d",
                name,
                max_length,
                limit,
                limit,
            )
            max_length = limit
        super().__init__(name, model, tokenizer, cfg.text_format, max_length, cfg.batch_size)


GoldenBuilder = Callable[[str, GoldenConfig, "torch.device"], Reward]

GOLDEN_BUILDERS: dict[GoldenKind, GoldenBuilder] = {
    GoldenKind.upbeat: lambda name, cfg, device: Upbeat(name),
    GoldenKind.harmless: lambda name, cfg, device: Harmless(name),
    GoldenKind.rm: lambda name, cfg, device: RewardModelGolden(name, cfg, device),
}


def build_golden(name: str, cfg: GoldenConfig, device: torch.device) -> Reward:
    """The golden reward configured as golden.<name>."""
    return GOLDEN_BUILDERS[GoldenKind(cfg.kind)](name, cfg, device)


def build_goldens(ctx: RunContext) -> dict[str, Reward]:
    """Every configured golden reward by name, the primary (first listed) first."""
    return {name: build_golden(name, g, ctx.device) for name, g in ctx.cfg.golden.items()}
