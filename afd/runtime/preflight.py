"""Errors at the door: every job of a command is composed and checked before Hydra creates a run
directory, a W&B run or a cache entry. A bad value, a missing file or an unreachable model source is one
line naming the key, and exit status 2.

`afd -m` sweeps are expanded job by job (the command line's and the experiment's `hydra.sweeper.params`,
as Hydra's basic sweeper expands them), so a bad job stops the sweep before its first job starts.
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from typing import Sequence

from afd.config import validate
from afd.config.run import DatasetSource, GoldenKind, RunConfig
from afd.runtime.errors import UserError

log = logging.getLogger(__name__)

# Hydra flags after which no job runs (help, printing the config, shell completion, ...): no pre-flight.
_NO_JOB_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
    "--resolve",
    "-p",
    "--package",
}
# Hydra flags taking a value that changes where the config comes from: the pre-flight cannot follow them,
# so the job checks itself instead (still before any work, but after Hydra made its directory).
_UNFOLLOWED_FLAGS = {
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}


def check_inputs(cfg: RunConfig) -> None:
    """Every local path the run will read exists, and every model source resolves (a hub id is looked up
    in the local hub cache, or the hub is probed within seconds)."""
    from afd.models.gguf import gguf_path
    from afd.models.hub import resolve_source

    d = cfg.dataset
    if d.source is DatasetSource.jsonl:
        if not d.path:
            raise UserError("dataset.path is not set: the jsonl source reads dataset.path=<file.jsonl>")
        if not Path(d.path).expanduser().is_file():
            raise UserError(f"dataset.path={d.path}: file not found")
    if d.source in (DatasetSource.hh_harmless, DatasetSource.hh_helpful) and d.path:
        from afd.data.hh import _is_local_path

        if _is_local_path(d.path) and not Path(d.path).expanduser().is_dir():
            raise UserError(
                f"dataset.path={d.path}: directory not found (HH reads train.jsonl[.gz], test.jsonl[.gz])"
            )
    if d.demonstrations_path and not Path(d.demonstrations_path).expanduser().is_file():
        raise UserError(f"dataset.demonstrations_path={d.demonstrations_path}: file not found")
    if d.source is DatasetSource.chitchat_upbeat:
        from afd.data.chitchat import dataset_file

        dataset_file()
    m = cfg.model
    if m.gguf_package or m.gguf_file:
        if not (m.gguf_package and m.gguf_file):
            raise UserError("model.gguf_package and model.gguf_file must be set together")
        gguf_path(m.gguf_package, m.gguf_file)
    else:
        resolve_source(m.name_or_path, m.revision, "model.name_or_path")
    for name, g in cfg.golden.items():
        if g.kind is GoldenKind.rm:
            resolve_source(str(g.name_or_path), None, f"golden.{name}.name_or_path")


def check_run(cfg: RunConfig) -> None:
    """Everything about a job that can be known before it starts."""
    validate(cfg)
    check_inputs(cfg)


def expand_sweep(overrides: Sequence[str]) -> list[list[str]]:
    """The override list of each job of a multirun, in Hydra's basic sweeper's order: the product of the
    sweep overrides' values (`key=a,b`, `key=range(...)`, `glob(...)`), other overrides kept as given."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    # A later override of a key replaces an earlier one in its place, as in the basic sweeper.
    by_key: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                kind = override.value_type.name if override.value_type else "non-discrete"
                raise UserError(f"{override.input_line}: the basic sweeper cannot expand a {kind} sweep")
            by_key[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            by_key[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*by_key.values())]


def job_overrides(argv: Sequence[str]) -> tuple[list[str], bool] | None:
    """(overrides, is a multirun) of an `afd` command line, or None when no job runs or the pre-flight
    cannot follow its flags."""
    if any(a.split("=", 1)[0] in _NO_JOB_FLAGS | _UNFOLLOWED_FLAGS for a in argv):
        return None
    multirun = any(a in ("-m", "--multirun") for a in argv)
    return [a for a in argv if not a.startswith("-")], multirun


def preflight(argv: Sequence[str], conf_dir: str) -> int:
    """Compose and check every job the command line would run; the number of jobs checked (0 when the
    command runs none or the pre-flight cannot follow it). Raises UserError on the first bad job."""
    parsed = job_overrides(argv)
    if parsed is None:
        return 0
    overrides, multirun = parsed
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    from afd.config import register_configs, to_run_config

    register_configs()
    jobs = [overrides]
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            if multirun:
                primary = compose(
                    "config", overrides=[o for o in overrides if not _is_sweep(o)], return_hydra_config=True
                )
                if primary.hydra.runtime.choices.get("hydra/sweeper", "basic") != "basic":
                    return 0  # another sweeper (optuna, ...) chooses its own jobs
                params = primary.hydra.sweeper.get("params") or {}
                # As Hydra's basic sweeper: the config's sweep params first, the command line after.
                jobs = expand_sweep([*(f"{k}={v}" for k, v in params.items()), *overrides])
            for job in jobs:
                cfg = compose("config", overrides=[*job, "paths.output_dir=preflight"])
                try:
                    check_run(to_run_config(cfg))
                except MissingMandatoryValue as e:
                    raise UserError(
                        f"config key {e.full_key} has no value: set it on the command line ({e.full_key}=...)"
                    ) from None
                except UserError as e:
                    raise UserError(f"{e} (job {' '.join(job)})" if multirun else str(e)) from None
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(_one_line(e)) from None
    finally:
        GlobalHydra.instance().clear()
    return len(jobs)


def _is_sweep(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).is_sweep_override()
    except Exception:
        return False


def _one_line(e: BaseException) -> str:
    """Hydra's and OmegaConf's message and its cause's, first lines only (the rest repeats the key and
    lists internal types), on one line."""
    parts = [str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__]
    cause = e.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip().splitlines()[0] not in parts[0]:
        parts.append(str(cause).strip().splitlines()[0])
    return ": ".join(parts)


def debug_enabled(argv: Sequence[str]) -> bool:
    """AFD_DEBUG=1 or hydra.verbose=... on the command line: show tracebacks instead of one line."""
    return os.environ.get("AFD_DEBUG", "").strip().lower() in {"1", "true", "yes"} or any(
        a.startswith("hydra.verbose=") for a in argv
    )
