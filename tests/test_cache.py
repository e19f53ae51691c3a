"""The stage cache: hits, misses on a changed knob, and no trusted entry after a killed write."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest

from afd.cache import StageCache, stage_key


@dataclass
class Knobs:
    lr: float
    steps: int


def test_hit_reuses_and_changed_knob_misses(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def build(out):
        calls.append(out)
        (out / "weights.txt").write_text("w")

    a = cache.get_or_build("sft", {"knobs": Knobs(1e-4, 10)}, build)
    b = cache.get_or_build("sft", {"knobs": Knobs(1e-4, 10)}, build)
    c = cache.get_or_build("sft", {"knobs": Knobs(1e-4, 11)}, build)
    assert a == b != c
    assert len(calls) == 2
    assert (a / "weights.txt").read_text() == "w" and (a / "spec.json").exists()


def test_key_depends_on_stage_and_every_field():
    base = {"knobs": Knobs(1e-4, 10), "seed": 0}
    assert stage_key("sft", base) == stage_key("sft", {"seed": 0, "knobs": Knobs(1e-4, 10)})
    assert stage_key("sft", base) != stage_key("sample", base)
    assert stage_key("sft", base) != stage_key("sft", {**base, "seed": 1})


def test_failed_build_leaves_nothing(tmp_path):
    cache = StageCache(tmp_path)

    def build(out):
        (out / "half.bin").write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.get_or_build("sft", {"x": 1}, build)
    assert not cache.entry("sft", {"x": 1}).exists()
    assert list((tmp_path / "sft").iterdir()) == []


def test_killed_write_is_not_trusted_and_rerun_completes(tmp_path):
    # A real kill: the process dies mid-build with no chance to clean up.
    script = textwrap.dedent(
        f"""
        import os
        from afd.cache import StageCache
        def build(out):
            (out / "half.bin").write_text("partial")
            os._exit(9)
        StageCache({str(tmp_path)!r}).get_or_build("sft", {{"x": 1}}, build)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == 9
    cache = StageCache(tmp_path)
    assert not cache.entry("sft", {"x": 1}).exists(), "a half-written entry must not be visible"
    leftovers = list((tmp_path / "sft").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".")

    built = []
    entry = cache.get_or_build(
        "sft", {"x": 1}, lambda out: (built.append(1), (out / "full.bin").write_text("ok"))
    )
    assert built == [1] and (entry / "full.bin").read_text() == "ok" and not (entry / "half.bin").exists()
