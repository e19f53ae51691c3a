"""The one entrypoint: `afd [overrides]` / `afd -m [sweep overrides]` (Hydra), dispatching to objectives."""

from __future__ import annotations

import logging
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from afd.config import register_configs, to_run_config
from afd.config.run import LoggerKind, RunConfig
from afd.runtime import distributed
from afd.runtime.cache import StageCache
from afd.runtime.errors import UserError
from afd.runtime.memory import peak_rss_gb
from afd.runtime.preflight import check_run, debug_enabled, preflight
from afd.runtime.tracking import tracking, write_json

log = logging.getLogger("afd")

# An absolute path: the console script runs main() from an installed module, where Hydra would
# otherwise resolve a relative config_path as a Python package.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def run(cfg: RunConfig, resolved: dict[str, Any]) -> dict[str, float]:
    """Run one job: the objective's stages, then metrics.json and the tracker summary."""
    check_run(cfg)  # also done by `afd` before Hydra starts; here for callers of run() and unfollowed flags
    distributed.start()
    if not distributed.is_main_process():
        # Other ranks of an accelerate run write nothing the user sees: no W&B run, and their outputs
        # (identical to the main process's) go to a scratch directory, deleted afterwards.
        with tempfile.TemporaryDirectory(prefix=f"afd-rank{distributed.rank()}-") as scratch:
            other = replace(
                cfg,
                paths=replace(cfg.paths, output_dir=scratch),
                logger=replace(cfg.logger, kind=LoggerKind.none),
            )
            return _run(other, resolved)
    return _run(cfg, resolved)


def _run(cfg: RunConfig, resolved: dict[str, Any]) -> dict[str, float]:
    """The job in this process, writing under cfg.paths.output_dir."""
    # Heavy imports here, not at the top: `afd --help` and `afd --cfg job` need none of them.
    import torch
    from transformers import set_seed

    from afd.models.devices import resolve_device, resolve_dtype, use_bf16_autocast
    from afd.objectives import run_objective
    from afd.runtime.context import RunContext
    from afd.runtime.memory import map_large_allocations

    _freeze_imports()
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    if cfg.compute.threads > 0:
        torch.set_num_threads(cfg.compute.threads)
    if cfg.compute.low_memory and not map_large_allocations():
        log.warning("compute.low_memory: the C library is not glibc, memory is returned as it decides")
    set_seed(cfg.seed)
    device = resolve_device(cfg.compute)
    with tracking(cfg, output_dir, resolved) as tracker:
        ctx = RunContext(
            cfg=cfg,
            output_dir=output_dir,
            cache=StageCache(cfg.paths.cache_dir),
            tracker=tracker,
            device=device,
            dtype=resolve_dtype(cfg.compute, device),
            bf16=use_bf16_autocast(cfg.compute, device),
        )
        metrics = run_objective(ctx, cfg.objective)
        write_json(output_dir / "metrics.json", metrics)
        tracker.log(metrics)
        tracker.summary(metrics)
    # Not metrics: what a run costs depends on what the cache held, its results must not. Written after
    # the tracker has closed, so that the process's peak covers all of the run.
    write_json(output_dir / "resources.json", {"stages": ctx.cache.builds, "peak_rss_gb": peak_rss_gb()})
    log.info("wrote %s", output_dir / "metrics.json")
    return metrics


_frozen = False


def _freeze_imports() -> None:
    """Take what the pipeline imports out of the garbage collector's scans, once a process.

    A full collection costs time in proportion to the live objects, and torch, transformers, TRL, datasets
    and matplotlib hold about 600k of them: 0.3-0.5 s a collection here, which the trainers (accelerate
    frees memory after training) and afd's stages run several times a stage. They live as long as the
    process anyway, so they are collected first and then frozen (gc.freeze)."""
    global _frozen
    if _frozen:
        return
    import gc

    import datasets  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import trl  # noqa: F401

    import afd.stages.prepare  # noqa: F401

    gc.collect()
    gc.freeze()
    _frozen = True


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        return _main(cfg)
    except UserError as e:
        # Hydra would print the traceback of any exception leaving the task; a user error is one line.
        if debug_enabled(sys.argv[1:]):
            raise
        print(f"afd: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _main(cfg: DictConfig) -> float | None:
    try:
        run_cfg = to_run_config(cfg)
    except MissingMandatoryValue as e:
        raise UserError(
            f"config key {e.full_key} has no value: set it on the command line ({e.full_key}=...)"
        ) from None
    if distributed.world_size() > 1 and not any(
        o.startswith("hydra.run.dir=") for o in HydraConfig.get().overrides.hydra
    ):
        log.warning(
            "%d processes and no hydra.run.dir=...: each process stamps its own run directory; "
            "the results are in the main process's, the others hold only Hydra's logs",
            distributed.world_size(),
        )
    resolved = OmegaConf.to_container(cfg, resolve=True)
    metrics = run(run_cfg, resolved)
    # Returned so that sweepers (e.g. optuna) can optimise it.
    return metrics.get("eval/golden_mean")


def cli() -> None:
    """Console script: `afd [overrides]`, `afd -m [sweep]`, or `afd report <sweep dir>`.

    Every job is checked before Hydra starts (afd.preflight): a user error is one line and status 2,
    with no run directory, W&B run or cache entry made. Ctrl-C is one line and status 130.
    """
    argv = sys.argv[1:]
    debug = debug_enabled(argv)
    try:
        if argv and argv[0] == "report":
            from afd.analysis.report import main as report_main

            sys.exit(report_main(argv[1:]))
        # Before Hydra composes: the yaml files extend the schemas stored here.
        register_configs()
        preflight(argv, CONF_DIR)
        main()
    except UserError as e:
        if debug:
            raise
        print(f"afd: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        if debug:
            raise
        print(
            "afd: interrupted; finished stages stay in the cache, so a re-run continues from them",
            file=sys.stderr,
        )
        sys.exit(130)


if __name__ == "__main__":
    cli()
