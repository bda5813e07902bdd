"""The one Ray start (guardrl.integrations.ray.init_ray): a local head with the CPUs and logical GPUs asked
for, in its own temp dir, reused (not restarted) while it runs; RAY_ADDRESS is attached to, never a local head."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guardrl.integrations.ray import init_ray, local_head_kwargs


def test_local_head_kwargs(tmp_path, monkeypatch):
    monkeypatch.setenv("GUARDRL_RAY_TMP", str(tmp_path))
    kw = local_head_kwargs(num_cpus=2.5, num_gpus=2, fresh_temp_dir=True)
    # "local": a new head even where /tmp/ray/ray_current_cluster names another user's; 2.5 CPUs -> 3
    assert (kw["address"], kw["num_cpus"], kw["num_gpus"], kw["include_dashboard"]) == ("local", 3, 2, False)
    assert Path(kw["_temp_dir"]).parent == tmp_path and Path(kw["_temp_dir"]).name.startswith("guardrl-ray-")
    assert "num_gpus" not in local_head_kwargs(num_cpus=1) and "_temp_dir" not in local_head_kwargs()


def test_a_local_head_with_logical_gpus_is_started_once_and_reused(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray already running in this test process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("GUARDRL_RAY_TMP", str(tmp_path))
    env = {"env_vars": {"GUARDRL_RAY_PROBE": "on"}}
    assert init_ray(num_cpus=1, num_gpus=2, runtime_env=env, fresh_temp_dir=True) is True
    try:
        res = ray.cluster_resources()
        assert res["CPU"] == 1 and res["GPU"] == 2  # logical GPUs on a CPU machine (verl's pools count them)
        assert ray.get(ray.remote(lambda: os.environ.get("GUARDRL_RAY_PROBE")).remote()) == "on"
        assert list(tmp_path.glob("guardrl-ray-*/session_*"))  # its own temp dir
        # a second caller (a stage inside the pipeline) reuses it: nothing started, nothing to shut down
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # would fail if it tried to attach
        assert init_ray(num_cpus=8) is False
        assert ray.cluster_resources()["CPU"] == 1
    finally:
        ray.shutdown()


def test_ray_address_is_attached_to(monkeypatch):
    """With RAY_ADDRESS set, init_ray attaches (here to an address with no cluster: Ray's ConnectionError
    shows it tried that address instead of starting a local head with the CPUs asked for)."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray already running in this test process")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    with pytest.raises((ConnectionError, RuntimeError)):
        init_ray(num_cpus=4)
    assert not ray.is_initialized()


def test_importing_the_helper_and_the_row_writer_starts_nothing():
    """Ray is imported when init_ray runs, verl never by the row writer: the augment stage and the pure recipe
    config stay light (`guardrl augment` imports rows, `guardrl rl config` the recipe config)."""
    import subprocess
    import sys

    mods = ["guardrl.integrations.ray", "guardrl.verl_ext.rows", "guardrl.verl_ext.recipe_config", "guardrl.rlset"]
    code = (f"import sys\nfor m in {mods!r}: __import__(m)\n"
            "bad = [m for m in ('ray', 'verl', 'vllm') if m in sys.modules]\nassert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
