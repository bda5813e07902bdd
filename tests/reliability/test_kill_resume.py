"""kill -9 at a random point of each stage, then rerun: the final output equals an uninterrupted run's
(sha256 of every shard / file for the deterministic stages; the same steps and finite, equal losses for SFT)
and the killed run's output is never accepted as complete. Slow: each case runs the stage two or three times."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import REPO, load_test_module

from guardrl.core.shards import ShardError, read_manifest, split_names, verify

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
AREA = "Kill -9 and resume"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
       "TOKENIZERS_PARALLELISM": "false"}
SEED = int(os.environ.get("GUARDRL_KILL_SEED", "0"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(cmd: list[str], timeout: float = 900) -> float:
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return time.monotonic() - t0


def kill_at_random(cmd: list[str], t_ref: float, rng: random.Random, lo: float = 0.15, hi: float = 0.85) -> float:
    """Start ``cmd`` in its own process group and SIGKILL the group (driver, Ray, workers) after a random
    fraction of the uninterrupted run's time; retried with earlier points if the run had already ended."""
    for _ in range(4):
        delay = rng.uniform(lo, hi) * t_ref
        proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
                time.sleep(1.0)  # let the killed group's children go
                return delay
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        hi = lo + (hi - lo) / 2
    pytest.fail("the stage always finished before the random kill point")


def _shard_digest(d: Path) -> dict:
    """What must equal between runs: every shard's rows and sha256, counts and skips (not timestamps)."""
    out = {}
    for name in split_names(d) or [""]:
        m = verify(d / name)
        out[name] = {"shards": m["shards"], "counts": m["counts"], "skipped": m["skipped"]["total"]}
    return out


def _refused(out: Path) -> bool:
    try:
        read_manifest(out)
    except ShardError:
        return True
    return False


def test_data_convert(tmp_path, record):
    rng = random.Random(SEED)
    cmd = [sys.executable, "-m", "data_prep.guard_mini", "--limit", "300", "--max-shard-bytes", "300000", "--out"]
    t_ref = _run([*cmd, str(tmp_path / "ref")])
    want = _shard_digest(tmp_path / "ref")
    out = tmp_path / "run"
    at = kill_at_random([*cmd, str(out)], t_ref, rng)
    assert _refused(out)  # nothing a reader accepts
    leftovers = list(tmp_path.glob(".run.*.tmp"))
    _run([*cmd, str(out)])
    assert _shard_digest(out) == want
    assert not list(tmp_path.glob(".run.*.tmp"))
    n = sum(len(v["shards"]) for v in want.values())
    record(AREA, "data convert: `python -m data_prep.guard_mini --limit 300` (train/dev split, typographic "
           "images, several shards), SIGKILL at a random point",
           f"killed after {at:.1f} s of a {t_ref:.1f} s run: no manifest, the reader refuses the folder "
           f"({len(leftovers)} hidden temp folder(s) left, removed by the rerun); rerun: all {n} shards byte-identical "
           "(sha256) to an uninterrupted run, same counts", expected="rerun = uninterrupted run; no partial output trusted",
           see="tests/data_prep/test_guard_mini.py::test_kill_minus_9_leaves_nothing_a_reader_accepts_and_rerun_completes")


def test_sft(tiny_model_dir, tmp_path, record):
    from omegaconf import OmegaConf

    from guardrl.core.shards import write_samples

    sft = load_test_module("integration/test_sft_train.py")
    rng = random.Random(SEED + 1)
    data = write_samples(tmp_path / "data", sft.toy_samples(44), stage="test.sft")
    recipe = tmp_path / "sft.yaml"
    base = sft._cfg(tiny_model_dir, data, tmp_path / "unused", max_steps=5).to_dict()
    base["trainer"]["log_every"] = 1
    base["checkpoint"]["every_steps"] = 1
    recipe.write_text(OmegaConf.to_yaml(OmegaConf.create(base)))
    t_ref = _run(sft._cli(tiny_model_dir, data, tmp_path / "ref", recipe, 5))
    want = sft._metrics(tmp_path / "ref")
    out = tmp_path / "run"
    at = kill_at_random(sft._cli(tiny_model_dir, data, out, recipe, 5), t_ref, rng, lo=0.3, hi=0.9)
    assert not (out / "hf").exists()
    done = max(sft._metrics(out), default=0) if (out / "metrics.jsonl").exists() else 0
    _run(sft._cli(tiny_model_dir, data, out, recipe, 5))
    got = sft._metrics(out)
    assert sorted(got) == sorted(want) == [1, 2, 3, 4, 5]
    for step in got:
        assert math.isfinite(got[step]["loss"])
        assert got[step]["loss"] == pytest.approx(want[step]["loss"], abs=1e-4), step
    assert (out / "hf" / "model.safetensors").exists()
    record(AREA, "SFT: `guardrl sft train` (tiny model, 5 steps, checkpoint every step), SIGKILL at a random point",
           f"killed after {at:.1f} s of a {t_ref:.1f} s run ({done} step(s) logged, no `hf/` export); rerun resumes: "
           "steps 1-5, every loss finite and equal to the uninterrupted run's (1e-4), export written",
           expected="same step count, finite equal losses",
           see="tests/integration/test_sft_train.py::test_kill_9_then_resume_matches_an_uninterrupted_run (kill right "
           "after the step-2 checkpoint)")


def test_reject(tiny_model_dir, tmp_path, record):
    from guardrl.stages.reject.runner import work_dir_for

    rj = load_test_module("integration/test_reject.py")
    gs = load_test_module("integration/guard_samples.py")
    rng = random.Random(SEED + 2)
    data = gs.write_sft_dir(tmp_path / "data", rj.N_PROMPTS)

    def cmd(out: Path) -> list[str]:
        recipe = tmp_path / f"{out.name}.yaml"
        recipe.write_text(json.dumps({"reject": rj._section(data, tiny_model_dir, out)}))
        return [sys.executable, "-m", "guardrl.cli", "reject", "run", "--recipe", str(recipe)]

    t_ref = _run(cmd(tmp_path / "ref"))
    out = tmp_path / "run"
    at = kill_at_random(cmd(out), t_ref, rng, lo=0.3, hi=0.7)
    published = not _refused(out)
    if published:  # the kill came after the atomic publish (the run was shutting Ray down): complete, verified
        verify(out)
    done = len(list(work_dir_for(out).glob("shard-*.parquet")))
    _run(cmd(out))
    assert rj._kept(out) == rj._kept(tmp_path / "ref")
    assert read_manifest(out)["reject"]["totals"] == read_manifest(tmp_path / "ref")["reject"]["totals"]
    record(AREA, "reject: `guardrl reject run` (tiny model, 2 Ray actors, 30 prompts x 4 samples, 8 work shards), "
           "SIGKILL of the whole process group (driver, local Ray, actors) at a random point",
           f"killed after {at:.1f} s of a {t_ref:.1f} s run ("
           + ("after the complete output was published, which verifies" if published else
              f"{done} finished work shard(s), no output published") + "); "
           "rerun: the same kept ids, sampled-text hashes and judgements, same totals",
           expected="rerun = uninterrupted run",
           see="tests/integration/test_reject.py::test_kill_9_then_resume_keeps_the_same_set")


def test_augment(tmp_path, record):
    gs = load_test_module("integration/guard_samples.py")
    rng = random.Random(SEED + 3)
    data = gs.write_sft_dir(tmp_path / "data", 40)

    def cmd(out: Path) -> list[str]:
        recipe = tmp_path / f"{out.name}.yaml"
        recipe.write_text(json.dumps({"augment": {"data": str(data), "out": str(out), "dev_size": 4, "seed": 5,
                                                  "chunk_size": 3, "num_cpus": 1}}))
        return [sys.executable, "-m", "guardrl.cli", "augment", "run", "--recipe", str(recipe)]

    def digest(out: Path) -> dict:
        return {"shards": _shard_digest(out), "augment": read_manifest(out)["augment"],
                "verl": {p.name: _sha(p) for p in sorted((out / "verl").glob("*.parquet"))}}

    t_ref = _run(cmd(tmp_path / "ref"))
    want = digest(tmp_path / "ref")
    out = tmp_path / "run"
    at = kill_at_random(cmd(out), t_ref, rng)
    assert _refused(out) and not (out / "verl").exists()
    _run(cmd(out))
    assert digest(out) == want
    record(AREA, "augment: `guardrl augment run` (40 hard samples + joined ones in Ray tasks, verl train/dev "
           "Parquet), SIGKILL at a random point",
           f"killed after {at:.1f} s of a {t_ref:.1f} s run: nothing published; rerun: guardrl shards and "
           f"verl {', '.join(want['verl'])} byte-identical (sha256) to an uninterrupted run, same report",
           expected="rerun = uninterrupted run; no partial output trusted")


def test_eval(tiny_model_dir, tmp_path, record):
    gs = load_test_module("integration/guard_samples.py")
    rng = random.Random(SEED + 4)
    bench = gs.write_sft_dir(tmp_path / "bench", 16)

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "guardrl.cli", "eval", "run", str(tiny_model_dir), "--bench", str(bench),
                "--out", str(out), "--engine", "hf", "--workers", "1", "--max-new-tokens", "12", "--no-wandb"]

    def digest(out: Path) -> dict:
        res = json.loads((out / "results.json").read_text())
        return {"predictions": _sha(out / "predictions.jsonl"), "metrics": res["metrics"],
                "md": re.sub(r"[\d.]+s \([\d.]+ samples/s\)", "T", (out / "results.md").read_text())}

    t_ref = _run(cmd(tmp_path / "ref"))
    want = digest(tmp_path / "ref")
    out = tmp_path / "run"
    at = kill_at_random(cmd(out), t_ref, rng, lo=0.3, hi=0.9)
    assert not out.exists()  # the run folder appears only complete
    _run(cmd(out))
    assert digest(out) == want
    record(AREA, "eval: `guardrl eval run` (tiny model, HF engine on a Ray actor, 16 samples), SIGKILL at a random "
           "point", f"killed after {at:.1f} s of a {t_ref:.1f} s run: no output folder (written to a temp folder, "
           "renamed when complete); rerun: predictions.jsonl byte-identical, same metrics, results.md equal but for "
           "its timing line",
           expected="rerun = uninterrupted run; no partial output trusted")


def test_rl(tiny_model_dir, tmp_path, record):
    """No uninterrupted reference run here (two GRPO runs on 2 shared cores are already minutes): the
    resumed run must finish at the configured step from the last complete checkpoint, with finite losses."""
    rls = load_test_module("integration/test_rl_support.py")
    rng = random.Random(SEED + 5)
    rls.write_parquet(rls.keyword_rows(16, seed=1, image_every=2), tmp_path / "train.parquet")
    rls.write_parquet(rls.keyword_rows(8, seed=2, image_every=2), tmp_path / "dev.parquet")
    out = tmp_path / "rl"
    cmd = [sys.executable, "-m", "guardrl.cli", "rl", "run", str(REPO / "recipes" / "tiny" / "rl.yaml"),
           f"model.path={tiny_model_dir}", f"data.train={tmp_path / 'train.parquet'}",
           f"data.val={tmp_path / 'dev.parquet'}", f"output_dir={out}", "verl.trainer.total_training_steps=6",
           "verl.trainer.save_freq=2", "verl.trainer.test_freq=100", "verl.trainer.val_before_train=false",
           "verl.trainer.logger=[console,file]", "verl.data.train_batch_size=4", "verl.data.max_response_length=24",
           "verl.actor_rollout_ref.actor.ppo_mini_batch_size=4"]
    ckpt = out / "checkpoints"
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        while not (ckpt / "global_step_2").exists():  # a random point after the first checkpoint began
            assert proc.poll() is None, "the RL run ended before its first checkpoint"
            assert time.monotonic() - t0 < 1200
            time.sleep(0.2)
        delay = rng.uniform(0, 15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=delay)
        assert proc.poll() is None, "the RL run ended before the kill point"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    killed_at = time.monotonic() - t0
    last = (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() if (
        ckpt / "latest_checkpointed_iteration.txt").exists() else "0"
    time.sleep(2)
    _run(cmd, timeout=1800)
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "6"
    assert not (ckpt / "global_step_7").exists()  # a finished run is not trained past its end
    if last == "6":  # killed while shutting down after the last checkpoint: the rerun has nothing to do
        resumed = {}
    else:
        resumed = rls.read_metrics(out / "metrics.jsonl")
        assert sorted(resumed) == list(range(int(last) + 1, 7)), (last, sorted(resumed))
    for step, m in resumed.items():
        assert math.isfinite(m["actor/pg_loss"]) and math.isfinite(m["critic/score/mean"]), step
        assert m["training/global_step"] == step
    record(AREA, "RL: `guardrl rl run` (verl PPO trainer, GRPO on the tiny model, 6 steps, checkpoint every 2), "
           "SIGKILL of the process group (driver, Ray, FSDP worker, HF rollout) 0-15 s after the step-2 "
           "checkpoint began", f"killed after {killed_at:.0f} s with checkpoint {last} complete; rerun resumed "
           f"from step {int(last) + 1}, ran steps {sorted(resumed)} to the configured 6, every pg_loss and score "
           "finite" + (" (the run had finished: the rerun trains nothing; verl alone would train a 7th step)"
                       if last == "6" else ""), expected="same step count, finite loss",
           see="tests/integration/test_rl_smoke.py::test_rerun_resumes_from_the_last_checkpoint (clean rerun)")
