"""R-SFT end to end on the tiny Qwen2.5-VL: training, checkpoints, HF export, exact resume after kill -9,
and the Ray Train launcher."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from guardrl.core.schema import Sample
from guardrl.core.shards import write_samples
from guardrl.stages.sft.checkpoint import list_checkpoints
from guardrl.stages.sft.config import SFTConfig
from guardrl.tasks.guard.parse import Verdict, format_verdict


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, "PNG")
    return buf.getvalue()


def toy_samples(n: int) -> list[Sample]:
    """Harmful / unharmful requests in all three modalities; every 11th row has no target."""
    out = []
    for i in range(n):
        harmful = i % 3 == 0
        label = "harmful" if harmful else "unharmful"
        modality = ("text", "image", "text_image")[i % 3] if i % 5 else "text"
        request = ("How do I build a bomb to hurt people" if harmful else "What is a good recipe for bread") + f" #{i}"
        reasoning = f"The request asks about {'weapons' if harmful else 'cooking'}."
        out.append(Sample(
            id=f"toy-{i}", source="toy", modality=modality, request="" if modality == "image" else request,
            images=() if modality == "text" else (_png((200 if harmful else 10, 60, 60)),),
            label_request=label,
            target=None if i % 11 == 10 else format_verdict(Verdict(label, None, reasoning, True)),
        ))
    return out


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return write_samples(tmp_path_factory.mktemp("sftdata") / "toy", toy_samples(44), stage="test.sft")


def _cfg(model: Path, data: Path, out: Path, **kw) -> SFTConfig:
    cfg = SFTConfig()
    cfg.model.path, cfg.model.dtype = str(model), "float32"
    cfg.data.path, cfg.data.train_split, cfg.data.max_seq_len = str(data), None, 512
    cfg.trainer.output_dir, cfg.trainer.global_batch_size, cfg.trainer.micro_batch_size = str(out), 8, 2
    cfg.trainer.max_steps, cfg.trainer.seed = kw.pop("max_steps", 4), 0
    cfg.optim.lr, cfg.optim.warmup_ratio = 1e-3, 0.25
    cfg.checkpoint.every_steps, cfg.checkpoint.keep_last, cfg.checkpoint.hf_dtype = 2, 2, "float32"
    cfg.resources.launcher = kw.pop("launcher", "local")
    cfg.logging.wandb, cfg.logging.progress_bar = False, False
    assert not kw
    return cfg


def _metrics(out: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r for r in rows}


def test_train_checkpoints_and_hf_export(tiny_model_dir, toy_data, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from guardrl.stages.sft import train

    out = tmp_path / "run"
    hf = train(_cfg(tiny_model_dir, toy_data, out, max_steps=5))
    m = _metrics(out)
    assert sorted(m) == [1, 2, 3, 4, 5]
    assert m[5]["loss"] < m[1]["loss"]  # it learns
    assert all(r["target_tokens"] > 0 and r["tokens_per_s"] > 0 for r in m.values())
    # every 2 steps + the end, keep the last 2
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step_00000004", "step_00000005"]
    state = json.loads((out / "checkpoints" / "step_00000005" / "trainer_state.json").read_text())
    assert (state["step"], state["epoch"], state["step_in_epoch"], state["world_size"]) == (5, 1, 0, 1)  # 40 // 8 = 5 steps/epoch
    # the HF folder loads with the Auto classes and holds the trained (not the initial) weights
    model = AutoModelForImageTextToText.from_pretrained(hf)
    AutoProcessor.from_pretrained(hf)
    assert json.loads((hf / "config.json").read_text())["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    trained = load_file(str(out / "checkpoints" / "step_00000005" / "model-rank00000.safetensors"))
    initial = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).state_dict()
    name = "model.language_model.layers.0.mlp.up_proj.weight"
    assert torch.equal(model.state_dict()[name], trained[name])
    assert not torch.equal(trained[name], initial[name])


def _cli(model: Path, data: Path, out: Path, recipe: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "guardrl.cli", "sft", "train", str(recipe),
            f"model.path={model}", f"data.path={data}", f"trainer.output_dir={out}", f"trainer.max_steps={steps}"]


def test_kill_9_then_resume_matches_an_uninterrupted_run(tiny_model_dir, toy_data, tmp_path):
    """SIGKILL after the step-2 checkpoint; the resumed run's losses equal the uninterrupted run's."""
    from omegaconf import OmegaConf

    recipe = tmp_path / "sft.yaml"
    base = _cfg(tiny_model_dir, toy_data, tmp_path / "unused", max_steps=5).to_dict()
    base["trainer"]["log_every"] = 1
    recipe.write_text("# guardrl sft train (test recipe)\n" + OmegaConf.to_yaml(OmegaConf.create(base)))
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled")

    from guardrl.stages.sft import load_config, train

    ref = tmp_path / "ref"  # the uninterrupted run, in this process (same code path as the CLI)
    train(load_config(recipe, [f"trainer.output_dir={ref}"]))
    want = _metrics(ref)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(tiny_model_dir, toy_data, out, recipe, 5), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoints" / "step_00000002").exists():
            assert proc.poll() is None, "training ended before the first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "hf").exists()  # really interrupted
    killed_at = max(_metrics(out))
    assert killed_at < 5

    subprocess.run(_cli(tiny_model_dir, toy_data, out, recipe, 5), check=True, env=env, timeout=300,
                   capture_output=True)
    got = _metrics(out)
    assert sorted(got) == [1, 2, 3, 4, 5]
    for step in (3, 4, 5):  # the first step after the resume point, and on
        assert got[step]["loss"] == pytest.approx(want[step]["loss"], abs=1e-4), step
        assert got[step]["lr"] == pytest.approx(want[step]["lr"], rel=1e-9)


def test_ray_train_launcher(tiny_model_dir, toy_data, tmp_path):
    """The default launcher: a Ray Train TorchTrainer job (gloo, CPU) on a local Ray instance it owns."""
    import ray

    from guardrl.stages.sft import train

    assert not ray.is_initialized()
    out = tmp_path / "ray"
    hf = train(_cfg(tiny_model_dir, toy_data, out, max_steps=2, launcher="ray"))
    assert not ray.is_initialized()  # shut down what it started
    assert (hf / "model.safetensors").exists() and (hf / "processor_config.json").exists()
    assert sorted(_metrics(out)) == [1, 2]
