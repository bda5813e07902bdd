"""Untrusted files: pickle weights refused unless the user opts in (and even then no code runs),
``trust_remote_code`` never enabled, YAML recipes loaded without constructing Python objects."""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from reliability_helpers import REPO, assert_user_error, run_cli

pytestmark = pytest.mark.reliability
AREA = "Untrusted files"


class _Evil:
    """Unpickling this runs ``touch SENTINEL``."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def _pickle_checkpoint(tiny_model_dir: Path, dest: Path, sentinel: Path) -> Path:
    """The tiny model with its weights as a ``pytorch_model.bin`` that also carries a code-running object."""
    from safetensors.torch import load_file

    shutil.copytree(tiny_model_dir, dest)
    sd = load_file(dest / "model.safetensors")
    (dest / "model.safetensors").unlink()
    torch.save({**sd, "evil": _Evil(sentinel)}, dest / "pytorch_model.bin")
    return dest


def test_pickle_checkpoint_refused_unless_opted_in_and_never_runs_code(tiny_model_dir, tmp_path, record):
    sentinel = tmp_path / "PWNED"
    ckpt = _pickle_checkpoint(tiny_model_dir, tmp_path / "ckpt", sentinel)
    msg = assert_user_error(run_cli(["export", "run", str(ckpt), str(tmp_path / "out")]),
                            "pickle-based weights are refused", "--allow-pickle")
    assert not sentinel.exists() and not (tmp_path / "out").exists()
    record(AREA, "`guardrl export run` on a checkpoint folder holding a `pytorch_model.bin` (pickle)", msg,
           expected="refused without `--allow-pickle`", see="tests/integration/test_export.py")
    from guardrl.stages.export.runner import ExportError, ExportOptions, export_checkpoint

    with pytest.raises(ExportError, match="weights_only") as info:  # in-process: saves a second CLI start-up
        export_checkpoint(ckpt, tmp_path / "out", ExportOptions(allow_pickle=True))
    assert not sentinel.exists() and not (tmp_path / "out").exists()
    record(AREA, "the same with the opt-in (`allow_pickle=True`, = `--allow-pickle`), the pickle holding an object "
           "whose `__reduce__` runs `touch`", f"ExportError: {str(info.value)[:200]}; the command never ran "
           "(no file created)", expected="read with weights_only=True: refused, no code runs")


def test_engines_on_a_pickle_checkpoint_run_no_code(tiny_model_dir, tmp_path, record):
    from guardrl.stages.serve.api import Guard

    sentinel = tmp_path / "PWNED"
    ckpt = _pickle_checkpoint(tiny_model_dir, tmp_path / "ckpt", sentinel)
    with pytest.raises(Exception) as info:
        Guard.from_pretrained(ckpt, engine="hf")
    assert not sentinel.exists()
    record(AREA, "`Guard.from_pretrained` (HF engine, also used by eval, reject, moderate) on a model folder whose only "
           "weights are a `pytorch_model.bin` carrying a code-running object",
           f"load fails in transformers' `torch.load(weights_only=True)` ({type(info.value).__name__}); "
           "no code ran", expected="no code runs")


def _remote_code_model(tiny_model_dir: Path, dest: Path, sentinel: Path) -> Path:
    """The tiny model whose config points Auto classes at a local ``evil.py`` that writes SENTINEL on import."""
    shutil.copytree(tiny_model_dir, dest)
    (dest / "evil.py").write_text(f"open({str(sentinel)!r}, 'w').write('ran')\n"
                                  "from transformers import Qwen2_5_VLConfig as EvilConfig\n"
                                  "from transformers import Qwen2_5_VLForConditionalGeneration as EvilModel\n")
    cfg = json.loads((dest / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForImageTextToText": "evil.EvilModel",
                       "AutoModelForCausalLM": "evil.EvilModel"}
    (dest / "config.json").write_text(json.dumps(cfg))
    return dest


def test_remote_code_never_runs(tiny_model_dir, tmp_path, record, monkeypatch):
    from guardrl.integrations.verl.reward import _token_counter
    from guardrl.integrations.verl.rollout import HFRolloutServer
    from guardrl.stages.serve.api import Guard

    sentinel = tmp_path / "RAN"
    model = _remote_code_model(tiny_model_dir, tmp_path / "model", sentinel)
    monkeypatch.chdir(tmp_path)
    msg = assert_user_error(run_cli(["export", "run", str(model), str(tmp_path / "out")]), "auto_map",
                            "trust_remote_code")
    record(AREA, "`guardrl export run` on a model whose config.json has `auto_map` to a local `evil.py`", msg,
           expected="refused")
    happened = []
    for name, load in (("Guard.from_pretrained (HF engine)", lambda: Guard.from_pretrained(model, engine="hf")),
                       ("RL rollout server (HF engine)", lambda: HFRolloutServer(
                           SimpleNamespace(max_num_seqs=4, seed=0), SimpleNamespace(local_path=str(model)))),
                       ("reward token counter", lambda: _token_counter(str(model))("a b c"))):
        try:
            obj = load()
            happened.append(f"{name}: loads transformers' own class ({type(getattr(obj, 'engine', obj)).__name__})")
        except Exception as exc:  # refusing is fine too; running the code is not
            happened.append(f"{name}: refused ({type(exc).__name__})")
        assert not sentinel.exists(), f"{name} ran remote code"
    record(AREA, "the same model through the loaders of moderation/eval/reject, the RL rollout and the reward",
           "; ".join(happened) + "; `evil.py` never imported", expected="remote code never runs")


def _calls_with_trust_remote_code(root: Path) -> list[str]:
    bad = []
    for f in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "trust_remote_code" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        bad.append(f"{f.relative_to(REPO)}:{node.lineno}")
    return bad


def test_trust_remote_code_never_enabled_in_code_or_recipes(record):
    bad = _calls_with_trust_remote_code(REPO / "guardrl") + _calls_with_trust_remote_code(REPO / "data_prep")
    assert bad == [], bad
    recipes = [p for p in (REPO / "recipes").rglob("*.yaml") if "trust_remote_code: true" in p.read_text().lower()]
    assert recipes == [], recipes
    record(AREA, "every call in guardrl/ and data_prep/ that passes `trust_remote_code` (AST scan); every recipe",
           "all pass the constant False; no recipe sets it true", expected="never enabled implicitly")


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/name:os.system"])
def test_yaml_recipe_cannot_construct_python_objects(tmp_path, tag, record):
    from guardrl.core.recipe import RecipeError, load_recipe

    sentinel = tmp_path / "RAN"
    recipe = tmp_path / "augment.yaml"
    arg = f' ["touch {sentinel}"]' if "apply" in tag else ""
    recipe.write_text(f"augment:\n  data: {tmp_path}/in\n  out: {tmp_path}/out\n  seed: {tag}{arg}\n")
    with pytest.raises(RecipeError):
        load_recipe(recipe)
    msg = assert_user_error(run_cli(["augment", "run", "--recipe", str(recipe)]), str(recipe))
    assert not sentinel.exists()
    record(AREA, f"a recipe with a `{tag}` tag (`guardrl augment run --recipe`)", f"{msg}; nothing executed",
           expected="refused by the safe loader")


def test_no_unsafe_yaml_or_pickle_loading_in_code(record):
    hits = []
    for root in (REPO / "guardrl", REPO / "data_prep"):
        for f in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text(), str(f))):
                if not isinstance(node, ast.Call):
                    continue
                fn = node.func
                if (isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name)
                        and (fn.value.id, fn.attr) in {("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"),
                                                       ("pickle", "load"), ("pickle", "loads")}):
                    hits.append(f"{f.relative_to(REPO)}:{node.lineno} {fn.value.id}.{fn.attr}")
                for kw in node.keywords:
                    if kw.arg == "weights_only" and not (isinstance(kw.value, ast.Constant) and kw.value.value is True):
                        hits.append(f"{f.relative_to(REPO)}:{node.lineno} weights_only not True")
    assert hits == [], hits
    record(AREA, "AST scan of guardrl/ and data_prep/ for `yaml.load`, `yaml.unsafe_load`, `yaml.full_load`, "
           "`pickle.load(s)` and `torch.load(weights_only=...)` other than True",
           "none: recipes go through OmegaConf's safe loader (`guardrl.core.recipe`), weights through safetensors or "
           "`torch.load(weights_only=True)`", expected="no unsafe loader")
