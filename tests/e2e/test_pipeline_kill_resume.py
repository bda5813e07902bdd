"""Kill the pipeline (kill -9 of its process group) during SFT and during RL, rerun, check the outputs.

Slow (several minutes on 2 cores): run with ``pytest -m slow tests/e2e/test_pipeline_kill_resume.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardrl.core.shards import verify
from guardrl.stages.pipeline.runner import MARKER, STAGE_ORDER, read_marker

REPO = Path(__file__).resolve().parents[2]
SMALL = [
    "stages.sft.overrides=[trainer.max_steps=12,checkpoint.every_steps=3,trainer.log_every=1]",
    "stages.reject.overrides=[reject.limit=48,reject.sampling.max_new_tokens=96]",  # >= 8 balanced RL rows
    "stages.rl.overrides=[verl.trainer.total_training_steps=3,verl.trainer.save_freq=1,verl.trainer.test_freq=3,"
    "verl.data.max_response_length=96]",
    "stages.eval.limit=16",
    "stages.eval.overrides=[eval.sampling.max_new_tokens=96]",
]


def _local_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray cluster per run


def _cmd(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "guardrl.cli", "pipeline", "run", "recipes/tiny/pipeline.yaml",
            "--run-dir", str(run_dir), *extra, *SMALL]


def _start(run_dir: Path, *extra: str) -> subprocess.Popen:
    log = (run_dir.parent / f"pipeline-{time.time_ns()}.log").open("w")
    return subprocess.Popen(_cmd(run_dir, *extra), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=_local_env())


def _kill_when(proc: subprocess.Popen, ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the pipeline ended before the kill point"
        assert time.monotonic() < deadline, "kill point not reached in time"
        time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    time.sleep(3.0)  # Ray's processes fate-share with the killed driver


def _run(run_dir: Path, *extra: str) -> None:
    proc = subprocess.run(_cmd(run_dir, *extra), cwd=REPO, capture_output=True, text=True, timeout=3600,
                          env=_local_env())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


@pytest.mark.slow
def test_kill_during_sft_and_rl_then_rerun(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # 1. kill -9 during SFT, once its first checkpoint exists.
    proc = _start(run_dir, "--to", "sft")
    _kill_when(proc, lambda: any((run_dir / "sft" / "checkpoints").glob("*")), timeout=1800)
    assert read_marker(run_dir / "data") is not None
    assert read_marker(run_dir / "sft") is None  # a killed stage is never marked complete
    # 2. kill -9 during RL, once verl saved a checkpoint.
    proc = _start(run_dir, "--to", "rl")
    _kill_when(proc, lambda: any((run_dir / "rl" / "checkpoints").glob("global_step_*")), timeout=2400)
    assert read_marker(run_dir / "rl") is None
    sft_marker = read_marker(run_dir / "sft")
    assert sft_marker is not None and sft_marker["summary"]["steps"] == 12  # SFT resumed and finished
    # 3. rerun to the end.
    _run(run_dir)
    for stage in STAGE_ORDER:
        assert (run_dir / stage / MARKER).is_file(), stage
    verify(run_dir / "data", split="train")
    verify(run_dir / "reject")
    verify(run_dir / "augment")
    rl_metrics = [json.loads(x) for x in (run_dir / "rl" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps = sorted({int(m["step"]) for m in rl_metrics if "step" in m})
    assert steps[-1] == 3
    assert (run_dir / "export" / "model.safetensors").is_file()
    for name in ("sft", "rl"):
        results = json.loads((run_dir / "eval" / name / "results.json").read_text())
        assert results["metrics"]
    # 4. a second run skips everything.
    t0 = time.monotonic()
    out = subprocess.run(_cmd(run_dir), cwd=REPO, capture_output=True, text=True, timeout=600,
                         env=_local_env())
    assert out.returncode == 0
    assert out.stdout.count("skipped") >= len(STAGE_ORDER)
    assert time.monotonic() - t0 < 120
