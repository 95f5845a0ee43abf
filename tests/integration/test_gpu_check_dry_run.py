"""`bench/gpu_check.py --dry-run`: every stage runs on the CPU with tiny shapes (or is skipped
with its reason), each writes one JSON line as it ends, the summary comes last; a failing or
overrunning stage is recorded and the next one still runs."""

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # started first, so the workers finish together (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
STAGES = [
    "environment",
    "train_full",
    "train_lora",
    "engines",
    "evaluation",
    "packing",
    "bench_ours",
    "bench_trl",
    "bench_trl_liger",
]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, list[dict], Path]:
    folder = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    command = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--dry-run", "--work", str(folder / "work")]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return done, lines, folder / "work"


def test_every_stage_reports_one_line_and_the_summary_comes_last(dry_run):
    done, lines, work = dry_run
    assert done.returncode == 0, done.stderr[-4000:]
    assert [line["stage"] for line in lines] == [*STAGES, "summary"]
    results = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines()]
    assert results == lines
    summary = lines[-1]
    assert summary["ok"] and summary["failed"] == [] and summary["not_run"] == []
    assert summary["mode"] == "dry-run" and summary["device"] == "cpu"


def test_every_stage_is_ok_or_skipped_with_its_reason(dry_run):
    _, lines, _ = dry_run
    for line in lines[:-1]:
        assert line["ok"] is True, (line["stage"], line["error"])
        assert line["error"] is None
        if line["skipped"] is not None:
            assert isinstance(line["skipped"], str) and len(line["skipped"]) > 10, line
    ran = {line["stage"] for line in lines[:-1] if line["skipped"] is None}
    assert ran >= {"environment", "train_full", "train_lora", "engines", "evaluation", "packing", "bench_ours"}


def test_the_stages_report_what_they_assert(dry_run):
    _, lines, _ = dry_run
    stage = {line["stage"]: line for line in lines}
    assert all(stage["environment"]["transformers_internals"].values())
    for name in ("train_full", "train_lora"):
        assert stage[name]["packed"] and stage[name]["loss_last"] < stage[name]["loss_first"]
    for engine in ("ddp", "fsdp"):
        assert stage["engines"][engine]["relative_drift"] <= stage["engines"][engine]["drift_bound"]
    assert stage["evaluation"]["judge"] == "reward-model" and stage["evaluation"]["judged"] > 0
    assert stage["evaluation"]["base_generated"] > 0 and stage["evaluation"]["trained_generated"] > 0
    packing = stage["packing"]
    assert packing["path_forward"] == "FlexAttention (eager, cpu)"
    assert packing["gap_packed"] <= packing["tolerance"] < packing["gap_control"]


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import gpu_check

    return gpu_check


def test_a_failing_or_overrunning_stage_is_recorded_and_the_next_one_runs(gpu_check, tmp_path, monkeypatch):
    from gpu_common import MODES, Context

    def fails(ctx, figures, checks):
        figures["measured"] = 1.5
        raise RuntimeError("kernel launch failed")

    def overruns(ctx, figures, checks):
        time.sleep(30)

    def asserts(ctx, figures, checks):
        checks.require(False, "the loss did not fall")
        figures["after"] = True

    stages = {"fails": fails, "overruns": overruns, "asserts": asserts}
    monkeypatch.setattr(gpu_check, "STAGES", stages)
    ctx = Context("dry-run", "cpu", "fp32", replace(MODES["dry-run"], stage_timeout_s=1), tmp_path)
    report = gpu_check.Report(tmp_path / "results.jsonl", list(stages))
    lines = [gpu_check.run_stage(ctx, name, report) for name in stages]
    assert [line["ok"] for line in lines] == [False, False, False]
    assert lines[0]["measured"] == 1.5 and "kernel launch failed" in lines[0]["error"]
    assert "StageTimeout" in lines[1]["error"]
    assert lines[2]["after"] is True and lines[2]["error"] == "the loss did not fall"
    summary = report.summary(ctx)
    assert not summary["ok"] and summary["failed"] == list(stages)
