"""Export round trips on the tiny model: HF folder and a real verl FSDP checkpoint; pickle refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from guardrl.stages.export.runner import (
    ExportError,
    ExportOptions,
    check_folder,
    detect_checkpoint,
    export_checkpoint,
)
from guardrl.tasks.guard.prompts import build_messages

REPO = Path(__file__).resolve().parents[2]


def _app():
    from guardrl.cli import app

    return app


def _logits(folder):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    text = processor.apply_chat_template(build_messages("Is this safe?", "Sure.", 1), add_generation_prompt=True,
                                         tokenize=False)
    batch = processor(text=[text], images=[Image.new("RGB", (80, 60), (200, 30, 30))], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_hf_folder_round_trip(tiny_model_dir, tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"counts": {"a": 1}}))
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"metrics": {"guard/avg/request/f1": 0.5, "guard/avg/request/n": 10}}))
    out = tmp_path / "exported"
    meta = export_checkpoint(tiny_model_dir, out, ExportOptions(
        base_model="tiny-base", manifests=[str(manifest)], eval_results=str(results),
        recipe=[str(REPO / "recipes/tiny/export.yaml")], expected_parameters=1521088))
    assert meta["source"]["kind"] == "hf" and meta["dtype"] == "float32"
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md", "chat_template.jinja",
            "processor_config.json", "tokenizer.json", "guardrl_export.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt"))]
    assert "auto_map" not in json.loads((out / "config.json").read_text())
    card = (out / "README.md").read_text()
    assert "tiny-base" in card and meta["data_manifests"][0]["sha256"] in card and "50.00" in card
    diff = (_logits(tiny_model_dir) - _logits(out)).abs().max().item()
    assert diff <= 1e-5, diff
    assert check_folder(out, 1521088)["parameters"] == 1521088
    with pytest.raises(ExportError, match="expects"):
        check_folder(out, 1234)

    # after evaluation, the card gets the summary (guardrl export card)
    results.write_text(json.dumps({"metrics": {"guard/avg/request/f1": 0.8125, "guard/avg/request/n": 16,
                                               "guard/avg/response/f1": 0.5, "guard/avg/response/n": 4}}))
    r = CliRunner().invoke(_app(), ["export", "card", str(out), "--eval-results", str(results)])
    assert r.exit_code == 0, r.output
    card = (out / "README.md").read_text()
    assert "| request | 81.25 | 16 |" in card and "| response | 50.00 | 4 |" in card
    assert json.loads((out / "guardrl_export.json").read_text())["evaluation"]["metrics"]["guard/avg/request/n"] == 16


def test_bf16_export_as_in_the_3b_7b_recipes(tiny_model_dir, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "bf16"
    meta = export_checkpoint(tiny_model_dir, out, ExportOptions(dtype="bfloat16"))
    assert meta["dtype"] == "bfloat16"
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        names = f.keys()
        assert {str(f.get_tensor(k).dtype) for k in names} == {"torch.bfloat16"}
    ref, got = _logits(tiny_model_dir), _logits(out).float()
    assert (ref - got).abs().max().item() < 0.1 * ref.abs().max().item()  # bf16 rounding only
    with pytest.raises(ExportError, match="dtype"):
        export_checkpoint(tiny_model_dir, tmp_path / "x", ExportOptions(dtype="int8"))


def test_verl_fsdp_checkpoint_round_trip(tiny_model_dir, tmp_path):
    ckpt = tmp_path / "verl"
    subprocess.run([sys.executable, str(REPO / "tests/integration/verl_fsdp_checkpoint.py"), str(tiny_model_dir),
                    str(ckpt), "2"], check=True, capture_output=True, timeout=300)
    found = detect_checkpoint(ckpt)
    assert found.kind == "verl_fsdp" and found.world_size == 2 and found.weights_dir.name == "actor"
    with pytest.raises(ExportError, match="--allow-pickle"):
        export_checkpoint(ckpt, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    out = tmp_path / "exported"
    meta = export_checkpoint(ckpt, out, ExportOptions(allow_pickle=True))
    assert meta["source"]["world_size"] == 2 and meta["parameters"] == 1521088
    diff = (_logits(tiny_model_dir) - _logits(out)).abs().max().item()
    assert diff <= 1e-5, diff


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_weights_refused_unless_opted_in(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    src = tmp_path / "pickled"
    src.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.suffix != ".safetensors":
            (src / f.name).write_bytes(f.read_bytes())
    torch.save(load_file(tiny_model_dir / "model.safetensors"), src / "pytorch_model.bin")
    with pytest.raises(ExportError, match="refused"):
        export_checkpoint(src, tmp_path / "o1")
    meta = export_checkpoint(src, tmp_path / "o2", ExportOptions(allow_pickle=True))
    assert meta["parameters"] == 1521088
    assert (_logits(tiny_model_dir) - _logits(tmp_path / "o2")).abs().max().item() <= 1e-5

    # A pickle that runs code: refused by weights_only=True even with the opt-in; nothing ran.
    evil = _Evil()
    evil.marker = str(tmp_path / "pwned")
    (src / "pytorch_model.bin").unlink()
    torch.save({"x": evil}, src / "pytorch_model.bin")
    with pytest.raises(ExportError, match="weights_only"):
        export_checkpoint(src, tmp_path / "o3", ExportOptions(allow_pickle=True))
    assert not (tmp_path / "pwned").exists()


def test_remote_code_and_garbage_refused(tmp_path, tiny_model_dir):
    with pytest.raises(ExportError, match="neither"):
        detect_checkpoint(tmp_path)
    bad = tmp_path / "remote"
    bad.mkdir()
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "x.Y"}
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match="trust_remote_code"):
        export_checkpoint(bad, tmp_path / "o")

    sft = tmp_path / "sft_out"
    (sft / "hf").mkdir(parents=True)
    (sft / "hf" / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    assert detect_checkpoint(sft).weights_dir == sft / "hf"  # the SFT output_dir -> its final HF folder
    step = sft / "checkpoints" / "step_3"
    step.mkdir(parents=True)
    (step / "trainer_state.json").write_text("{}")
    (step / "model-rank0.safetensors").write_bytes(b"")
    with pytest.raises(ExportError, match="resumable SFT"):
        detect_checkpoint(step)


def test_cli_with_recipe_and_overrides(tiny_model_dir, tmp_path):
    from guardrl.cli import app

    out = tmp_path / "cli-out"
    res = CliRunner().invoke(app, ["export", "run", "--recipe", str(REPO / "recipes/tiny/export.yaml"),
                                   f"export.checkpoint={tiny_model_dir}", f"export.out={out}"])
    assert res.exit_code == 0, res.output
    assert (out / "model.safetensors").is_file()
    res = CliRunner().invoke(app, ["export", "run", str(tmp_path / "nothing"), str(tmp_path / "o")])
    assert res.exit_code == 2 and "not a directory" in res.output


@pytest.mark.parametrize("size", ["3b", "7b"])
def test_size_recipes_name_the_real_parameter_counts(size):
    from transformers import AutoModelForImageTextToText

    from guardrl.core.recipe import load_recipe
    from guardrl.models.tiny import reference_config

    cfg = load_recipe(REPO / f"recipes/qwen2_5_vl_{size}/export.yaml")
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(reference_config(size))
    assert cfg.export.expected_parameters == sum(p.numel() for p in model.parameters())
    assert cfg.export.dtype == "bfloat16"
