"""afd: alignment from demonstrations (Sun & van der Schaar, arXiv 2405.15624) as Hydra experiments on TRL."""

__version__ = "0.1.0"
