"""``benchmarks.run_all --small``: every benchmark still runs and the table / JSON / page keep their shape.

Never asserts a timing: figures on a shared CI machine mean nothing; only that each is a number with
its peer's and the ratio of the two.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.bench_grpo import BENCH_SITE, REPO, side_env, summarize_verl

ROW_KEYS = {"bench", "figure", "guardrl", "peer", "peer_value", "ratio", "goal", "status", "note", "values"}


def _run_all(tmp_path: Path, only: str, timeout: int) -> dict:
    out = tmp_path / "bench"
    r = subprocess.run([sys.executable, "-m", "benchmarks.run_all", "--small", "--only", only, "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "ratio guardrl/peer" in r.stdout  # the console table
    summary = json.loads((out / "results.json").read_text())
    page = (out / "benchmarks.md").read_text()
    for field in ("**Date:**", "**Command:**", "**Machine:**", "**Load average at start:**", "**Versions:**",
                  "| figure | guardrl | peer | peer value | ratio guardrl/peer |"):
        assert field in page
    assert not (REPO / "docs" / "benchmarks.md").exists() or "smoke" not in (REPO / "docs" / "benchmarks.md").read_text()
    return summary | {"page": page}


def _check_rows(summary: dict, benches: list[str]) -> None:
    assert [r["name"] for r in summary["runs"]] == benches
    for run in summary["runs"]:
        assert "error" not in run, run
        assert run["command"].startswith(("python -m benchmarks.", "taskset -c 0 python -m benchmarks."))
    by_bench = {b: [r for r in summary["rows"] if r["bench"] == b] for b in benches}
    for bench, rows in by_bench.items():
        assert rows, bench
        for row in rows:
            assert set(row) == ROW_KEYS
            assert row["status"] in ("-", "n/a (smoke)"), row
            v = row["values"]
            if row["ratio"] != "-":  # a ratio is always guardrl's figure over the peer's, both shown
                assert math.isclose(v["ratio"], v["guardrl"] / v["peer"], rel_tol=1e-9)
                assert row["guardrl"] != "-" and row["peer_value"] != "-"
        assert rows[0]["ratio"] != "-", rows[0]  # each benchmark's headline figure has its ratio


def test_run_all_small_fast_benchmarks(tmp_path):
    summary = _run_all(tmp_path, "reward,data,generation", timeout=900)
    _check_rows(summary, ["reward", "data", "generation"])
    assert summary["small"] is True
    assert summary["machine"]["cores"] >= 1 and len(summary["machine"]["load_avg"]) == 3
    assert {"torch", "transformers", "verl", "trl (.bench-site)"} <= set(summary["versions"])


@pytest.mark.slow
@pytest.mark.skipif(not (BENCH_SITE / "trl").is_dir(), reason="TRL not installed in .bench-site (make bench does it)")
def test_run_all_small_against_trl(tmp_path):
    summary = _run_all(tmp_path, "sft,grpo", timeout=2400)
    _check_rows(summary, ["sft", "grpo"])
    grpo = next(r for r in summary["runs"] if r["name"] == "grpo")["result"]
    assert grpo["guardrl"]["steps"] == grpo["trl"]["steps"] == 1
    assert set(grpo["guardrl"]["phases_s"]) >= {"generation", "log_prob", "update", "reward"}
    sft = next(r for r in summary["runs"] if r["name"] == "sft")["result"]
    assert sft["guardrl"]["tokens_per_step"] == sft["trl"]["tokens_per_step"]  # the same batch on both sides


def test_gpu_rows_say_not_measured_without_a_gpu():
    rows = report.rows({"name": "sft_gpu", "not_measured": report.NO_GPU})
    assert len(rows) == 2 and all(r["status"] == "not measured: no GPU available in this session" for r in rows)
    assert all(r["guardrl"] == r["peer_value"] == r["ratio"] == "-" for r in rows)


def test_failed_benchmark_gives_an_error_row_not_a_crash():
    rows = report.rows({"name": "grpo", "error": "no result (exit 1; see x.log)"})
    assert rows[0]["status"].startswith("error: no result")
    rows = report.rows({"name": "grpo", "result": {"unexpected": 1}, "log": "x.log"})
    assert rows[0]["status"].startswith("error: unexpected result shape")


def test_grpo_phase_split_from_verl_metrics():
    # step 1 is warm-up; steps 2 and 3: step 10 s = gen 6 + old_log_prob 1 + update_actor 2 + update_weights 0.5
    # + reward 0.1 -> other 0.4; 8 samples / 10 s = 0.8 samples/s
    m = {"timing_s/step": 10.0, "timing_s/gen": 6.0, "timing_s/old_log_prob": 1.0, "timing_s/update_actor": 2.0,
         "timing_s/update_weights": 0.5, "timing_s/reward": 0.1, "response_length/mean": 32.0}
    res = summarize_verl({1: {"timing_s/step": 99.0}, 2: m, 3: m}, warmup=1, samples_per_step=8)
    assert res["steps"] == 2 and res["seconds_per_step"] == 10.0 and res["samples_per_s"] == 0.8
    assert res["phases_s"] == pytest.approx({"generation": 6.0, "reward": 0.1, "log_prob": 1.0, "update": 2.5,
                                             "other": 0.4})


def test_trl_only_on_the_peer_path():
    ours, peer = side_env(trl=False)["PYTHONPATH"].split(os.pathsep), side_env(trl=True)["PYTHONPATH"].split(os.pathsep)
    assert str(BENCH_SITE) not in ours and peer[0] == str(BENCH_SITE)


def test_grpo_scaling_rows_hold_the_larger_size_to_parity():
    side = {"phases_s": {"generation": 1.0, "update": 2.0}, "setup_s": 30.0, "load_1m": [1.0, 1.0]}
    pts = [{"prompts": 4, "group": 2, "max_new_tokens": 32, "guardrl": {**side, "seconds_per_step": 3.0},
            "trl": {**side, "seconds_per_step": 2.0}},
           {"prompts": 8, "group": 8, "max_new_tokens": 128, "guardrl": {**side, "seconds_per_step": 9.0},
            "trl": {**side, "seconds_per_step": 10.0}}]
    rows = report.rows({"name": "grpo_scaling", "result": {"config": {"steps": 2, "warmup": 1}, "points": pts}})
    assert [r["ratio"] for r in rows] == ["1.50", "0.90"]
    assert [(r["goal"], r["status"]) for r in rows] == [("-", "-"), ("<= 1.0", "ok")]
    assert "n=2" in rows[0]["figure"] and "8 prompts x n=8, 128 new tokens" in rows[1]["figure"]
