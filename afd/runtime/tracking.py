"""Experiment tracking: W&B runs (offline by default) and the run's own files (metrics.json, tables).

A W&B run is grouped by experiment, typed by objective, tagged with the git commit, carries the
resolved config, and is always finished, also when the job fails (so sweeps never leave runs open).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

from afd.config.run import LoggerKind, RunConfig

log = logging.getLogger(__name__)


class Tracker(Protocol):
    report_to: str
    """What HF/TRL trainers should report to ("wandb" or "none"): they log into the same run."""

    def log(self, metrics: dict[str, Any]) -> None: ...

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None: ...

    def log_image(self, name: str, path: Path) -> None: ...

    def summary(self, metrics: dict[str, Any]) -> None: ...

    def finish(self, exit_code: int) -> None: ...


class NullTracker:
    report_to = "none"

    def log(self, metrics):
        pass

    def log_table(self, name, columns, rows):
        pass

    def log_image(self, name, path):
        pass

    def summary(self, metrics):
        pass

    def finish(self, exit_code):
        pass


class WandbTracker:
    report_to = "wandb"

    def __init__(self, cfg: RunConfig, output_dir: Path, resolved_config: dict[str, Any]):
        import wandb

        self._wandb = wandb
        commit = git_commit()
        self.run = wandb.init(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            mode=cfg.logger.mode.value,
            group=cfg.experiment,
            job_type=cfg.objective.name,
            name=run_name(cfg),
            tags=[f"git:{commit}", *cfg.logger.tags],
            config=resolved_config,
            dir=str(output_dir),
            # A multirun executes jobs in one process: never attach to the previous job's run.
            reinit="finish_previous",
        )
        # Best-of-N curves are logged one row per N: plotted against N, runs of different
        # objectives overlay in one dashboard panel.
        self.run.define_metric("bon/n")
        for key in ("bon/golden", "bon/kl", "bon/winrate_vs_sft", "bon/winrate_vs_demo"):
            self.run.define_metric(key, step_metric="bon/n")

    def log(self, metrics):
        self.run.log(metrics)

    def log_table(self, name, columns, rows):
        self.run.log({name: self._wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def log_image(self, name, path):
        self.run.log({name: self._wandb.Image(str(path))})

    def summary(self, metrics):
        self.run.summary.update(metrics)

    def finish(self, exit_code):
        self.run.finish(exit_code=exit_code)


def run_name(cfg: RunConfig) -> str:
    return f"{cfg.objective.name}-{cfg.model.name}-{cfg.dataset.name}-seed{cfg.seed}"


def git_commit() -> str:
    """The afd checkout's commit (with -dirty when modified), or "unknown" outside a git checkout."""
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextmanager
def tracking(cfg: RunConfig, output_dir: Path, resolved_config: dict[str, Any]) -> Iterator[Tracker]:
    tracker: Tracker = (
        WandbTracker(cfg, output_dir, resolved_config)
        if cfg.logger.kind is LoggerKind.wandb
        else NullTracker()
    )
    exit_code = 1
    try:
        yield tracker
        exit_code = 0
    except KeyboardInterrupt:
        exit_code = 130
        raise
    finally:
        if exit_code == 130:
            # Ctrl-C: the run is marked failed without W&B's multi-line run summary; the CLI prints one line.
            with open(os.devnull, "w") as devnull, redirect_stdout(devnull), redirect_stderr(devnull):
                tracker.finish(exit_code)
        else:
            tracker.finish(exit_code)


def write_json(path: Path, data: Any) -> None:
    """Write atomically: a killed run leaves the previous file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    os.replace(tmp, path)
