"""A discriminator's logit turned into a policy's reward (paper section 2): D = sigmoid(logit) with
demonstrations = 1; each divergence the adversarial policy minimises has its own transform of D."""

from __future__ import annotations

import numpy as np

from afd.config.run import Choice
from afd.rewards.reward import Reward


class Divergence(Choice):
    """The divergence the adversarial policy minimises, through the reward it derives from D."""

    reverse_kl = "reverse_kl"
    """KL(pi || demo): r = log D - log(1 - D) = logit (AIRL)."""
    js = "js"
    """Jensen-Shannon (the GAN objective) with the non-saturating generator reward r = log D: the
    policy raises the discriminator's belief that its samples are demonstrations."""
    gail = "gail"
    """Jensen-Shannon with the minimax generator reward r = -log(1 - D), as in GAIL: the generator
    lowers log(1 - D), which saturates (gives little gradient) where D is near 0."""


# r(D) for D = sigmoid(logit), written in the logit for numerical stability.
TRANSFORMS = {
    Divergence.reverse_kl: lambda z: z,  # log D - log(1 - D)
    Divergence.js: lambda z: -np.logaddexp(0.0, -z),  # log D: the GAN's non-saturating generator reward
    Divergence.gail: lambda z: np.logaddexp(0.0, z),  # -log(1 - D): the minimax generator reward (GAIL)
}


class DiscriminatorReward:
    """The policy's reward from a discriminator: the divergence's transform of its logit."""

    def __init__(self, discriminator: Reward, divergence: Divergence):
        self.discriminator, self.divergence = discriminator, divergence
        self.name = f"{divergence.value} of {discriminator.name}"

    def score(self, prompts, responses):
        return TRANSFORMS[self.divergence](self.discriminator.score(prompts, responses))
