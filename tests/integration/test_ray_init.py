"""The one Ray start (guardrl.integrations.ray.init_ray): a local head with the CPUs and logical GPUs asked
for, in its own temp dir, reused (not restarted) while it runs; RAY_ADDRESS is attached to, never a local head."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
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


@pytest.fixture
def short_tmp():
    """A short temp dir: Ray's Unix sockets live under it and a socket path may not pass 107 bytes."""
    d = tempfile.mkdtemp(prefix="grl-", dir="/tmp")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def test_a_local_head_with_logical_gpus_is_started_once_and_reused(short_tmp, monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray already running in this test process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("GUARDRL_RAY_TMP", str(short_tmp))
    env = {"env_vars": {"GUARDRL_RAY_PROBE": "on"}}
    assert init_ray(num_cpus=1, num_gpus=2, runtime_env=env, fresh_temp_dir=True) is True
    try:
        res = ray.cluster_resources()
        assert res["CPU"] == 1 and res["GPU"] == 2  # logical GPUs on a CPU machine (verl's pools count them)
        def probe() -> str | None:  # defined here: Ray ships it by value (the test module is not on workers' path)
            return os.environ.get("GUARDRL_RAY_PROBE")

        assert ray.get(ray.remote(probe).remote()) == "on"
        assert list(short_tmp.glob("guardrl-ray-*/session_*"))  # its own temp dir
        # a second caller (a stage inside the pipeline) reuses it: nothing started, nothing to shut down
        assert init_ray(num_cpus=8) is False
        assert ray.cluster_resources()["CPU"] == 1
    finally:
        ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_address_is_attached_to_not_a_new_head(short_tmp, monkeypatch):
    """A cluster started apart (`ray start --head --block`, 1 CPU, ended by its own process): with RAY_ADDRESS
    set, init_ray attaches to it; the 4 CPUs asked for are a local head's setting and are not passed."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray already running in this test process")
    port = _free_port()
    exe = Path(sys.executable).with_name("ray")
    head = subprocess.Popen([str(exe), "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
                             f"--temp-dir={short_tmp}", "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        while not list(short_tmp.glob("session_latest/sockets/raylet*")):
            assert head.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
            time.sleep(1)
        assert init_ray(num_cpus=4) is True
        try:
            assert ray.cluster_resources()["CPU"] == 1  # the cluster's own CPUs: attached, not started
        finally:
            ray.shutdown()
    finally:
        head.send_signal(signal.SIGINT)  # --block: ending the command ends the cluster it started (only that one)
        head.wait(timeout=60)
    deadline = time.monotonic() + 30
    while _processes_under(short_tmp) and time.monotonic() < deadline:
        time.sleep(1)
    assert not _processes_under(short_tmp)  # gcs_server, raylet, ... of that head are gone


def _processes_under(d: Path) -> list[int]:
    """Pids whose command line names ``d`` (the head's temp dir)."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(d) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                out.append(int(proc.name))
        except OSError:
            continue
    return out


def test_importing_the_helper_and_the_row_writer_starts_nothing():
    """Ray is imported when init_ray runs, verl never by the row writer: the augment stage and the pure recipe
    config stay light (`guardrl augment` imports rows, `guardrl rl config` the recipe config)."""
    mods = ["guardrl.integrations.ray", "guardrl.integrations.verl.rows", "guardrl.integrations.verl.recipe_config", "guardrl.stages.augment.runner"]
    code = (f"import sys\nfor m in {mods!r}: __import__(m)\n"
            "bad = [m for m in ('ray', 'verl', 'vllm') if m in sys.modules]\nassert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
