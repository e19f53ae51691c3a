"""The jobs of one or more sweep directories, read for `afd report`: each job's metrics.json, resolved
config.yaml and command-line overrides, labelled with its variant (the objective plus every override
that differs between jobs); jobs the report cannot pool honestly are refused with the directory named.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from afd.runtime.errors import UserError

# Overrides that never name a variant: the objective leads the label anyway, seeds are what the
# report aggregates over, and the experiment file only bundles the overrides that are listed anyway.
NOT_VARIANT_KEYS = {"objective", "seed", "experiment"}


class ReportError(UserError):
    """A sweep directory the report cannot read; the message names the job directory."""


@dataclass
class Job:
    path: Path
    objective: str
    seed: int
    metrics: dict[str, float]
    overrides: dict[str, str] = field(default_factory=dict)
    variant: str = ""  # the objective plus the overrides that tell it apart; set by load_jobs
    settings: dict[str, object] = field(default_factory=dict)  # resolved config that must match across seeds


def _read_overrides(path: Path) -> dict[str, str]:
    """The job's command-line overrides; none when Hydra wrote no overrides.yaml."""
    file = path / ".hydra" / "overrides.yaml"
    if not file.is_file():
        return {}
    try:
        items = yaml.safe_load(file.read_text()) or []
    except yaml.YAMLError as e:
        raise ReportError(f"{path}: cannot read .hydra/overrides.yaml ({type(e).__name__}: {e})") from e
    if not isinstance(items, list):
        raise ReportError(f"{path}: .hydra/overrides.yaml is not a list of overrides")
    try:
        parsed = OverridesParser.create().parse_overrides([str(item) for item in items])
    except HydraException as e:
        raise ReportError(f"{path}: .hydra/overrides.yaml holds an override Hydra cannot parse ({e})") from e
    # A deleted key (~key) differs from any value it could have.
    return {
        o.get_key_element().lstrip("~+"): ("~" if o.is_delete() else o.get_value_element_as_str())
        for o in parsed
    }


def _read_job(path: Path) -> Job:
    config_file, metrics_file = path / "config.yaml", path / "metrics.json"
    if not config_file.is_file():
        raise ReportError(f"{path}: no config.yaml (not an afd job directory, or it failed before starting)")
    if not metrics_file.is_file():
        raise ReportError(
            f"{path}: no metrics.json (the job failed or is still running; re-run it to finish)"
        )
    try:
        config = yaml.safe_load(config_file.read_text())
        metrics = json.loads(metrics_file.read_text())
        objective, seed = str(config["objective"]["name"]), int(config["seed"])
    except (yaml.YAMLError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ReportError(f"{path}: cannot read config.yaml / metrics.json ({type(e).__name__}: {e})") from e
    settings = {k: v for k, v in _flatten(config).items() if not k.startswith(NOT_SETTINGS)}
    return Job(path, objective, seed, metrics, _read_overrides(path), variant=objective, settings=settings)


# Resolved-config keys that may differ between the seeds of one variant without changing what it is.
NOT_SETTINGS = ("seed", "experiment", "paths.", "logger.", "compute.threads", "compute.low_memory")


def _flatten(node: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, object] = {}
    for key, value in node.items():
        out.update(_flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return out


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """Hydra's numbered job subdirectories of `sweep_dir`, or `sweep_dir` itself when it is one run."""
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir}: not a directory")
    candidates = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir())
    if not candidates and (sweep_dir / ".hydra").is_dir():
        candidates = [sweep_dir]
    if not candidates:
        raise ReportError(f"{sweep_dir}: no job directories (subdirectories with a .hydra/ folder)")
    return candidates


def _is_variant_key(key: str) -> bool:
    return key not in NOT_VARIANT_KEYS and not key.startswith(("hydra.", "hydra/"))


def label_variants(jobs: Sequence[Job]) -> list[Job]:
    """Each job labelled `objective key=value ...` with every override key (sorted) whose value differs
    between the jobs; a key some jobs do not override counts as differing, and is absent from those
    jobs' labels."""
    keys = sorted({k for j in jobs for k in j.overrides if _is_variant_key(k)})
    varying = [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]
    return [
        dataclasses.replace(
            j,
            variant=" ".join([j.objective] + [f"{k}={j.overrides[k]}" for k in varying if k in j.overrides]),
        )
        for j in jobs
    ]


def _refuse_repeated_seeds(jobs: Sequence[Job]) -> None:
    """Two jobs of one variant with the same seed (e.g. the same run in two sweeps reported together, or
    sweeps that differ only in `experiment`) would count as two seeds and shrink the interval falsely."""
    seen: dict[tuple[str, int], Path] = {}
    for job in jobs:
        other = seen.setdefault((job.variant, job.seed), job.path)
        if other != job.path:
            raise ReportError(
                f"{job.path}: same variant ({job.variant}) and seed ({job.seed}) as {other}; "
                "report these sweeps separately"
            )


def _refuse_mixed_settings(jobs: Sequence[Job]) -> None:
    """Jobs of one variant label whose resolved configs differ beyond the seed (e.g. two sweeps whose
    experiment files set different pool sizes) are not seeds of one thing: refuse to pool them."""
    first: dict[str, Job] = {}
    for job in jobs:
        ref = first.setdefault(job.variant, job)
        differ = sorted(
            k for k in ref.settings.keys() | job.settings.keys() if ref.settings.get(k) != job.settings.get(k)
        )
        if differ:
            raise ReportError(
                f"{job.path}: same variant ({job.variant}) as {ref.path} but a different config "
                f"({', '.join(differ[:5])}{' ...' if len(differ) > 5 else ''}); "
                "report these sweeps separately"
            )


def load_jobs(*sweep_dirs: Path) -> list[Job]:
    """Every job directory under the sweep directories, labelled with its variant (label_variants)."""
    jobs, broken = [], []
    for sweep_dir in sweep_dirs:
        for path in _job_dirs(Path(sweep_dir)):
            try:
                jobs.append(_read_job(path))
            except ReportError as e:
                broken.append(str(e))
    if broken:
        raise ReportError("refusing to report a sweep with unreadable jobs:\n  " + "\n  ".join(broken))
    jobs = label_variants(jobs)
    _refuse_repeated_seeds(jobs)
    _refuse_mixed_settings(jobs)
    return jobs
