"""One command grammar for every stage: ``guardrl <stage> run RECIPE [k=v ...]`` and
``guardrl <stage> config RECIPE [k=v ...]`` (the resolved config, nothing runs); the old spellings
(``sft train``, ``sft check``, ``--recipe R``) still work and print the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from guardrl.cli import app
from guardrl.core.recipe import RecipeError, split_args

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny"


def _invoke(*args: str) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


# stage -> (recipe, one override, the key it sets in the printed config, the value it prints)
CASES = {
    "reject": ("reject.yaml", "reject.sampling.k=3", ("k",), 3),
    "augment": ("augment.yaml", "augment.share=0.3", ("share",), 0.3),
    "export": ("export.yaml", "export.dtype=float32", ("options", "dtype"), "float32"),
    "eval": ("eval.yaml", "eval.workers=3", ("eval", "workers"), 3),
    "pipeline": ("pipeline.yaml", "run_dir=/tmp/elsewhere", ("run_dir",), "/tmp/elsewhere"),
}


def _base(stage: str, model: Path) -> list[str]:
    """A real model folder as export's checkpoint / eval's model: `config` may check that it exists."""
    return {"export": [f"export.checkpoint={model}"], "eval": [f"eval.model={model}"]}.get(stage, [])


def _get(doc: dict, keys: tuple[str, ...]):
    for k in keys:
        doc = doc[k]
    return doc


@pytest.mark.parametrize("stage", sorted(CASES))
def test_config_prints_the_resolved_config_with_overrides(stage, tiny_model_dir):
    recipe, override, keys, value = CASES[stage]
    base = _base(stage, tiny_model_dir)
    doc = yaml.safe_load(_invoke(stage, "config", TINY / recipe, *base, override))
    assert _get(doc, keys) == value
    # the override changes the printed value: without it the recipe's own value shows
    assert _get(yaml.safe_load(_invoke(stage, "config", TINY / recipe, *base)), keys) != value


@pytest.mark.parametrize("stage", ["reject", "augment", "export", "eval"])
def test_old_recipe_option_is_an_alias(stage, tiny_model_dir):
    recipe, override, _, _ = CASES[stage]
    base = _base(stage, tiny_model_dir)
    assert _invoke(stage, "config", "--recipe", TINY / recipe, *base, override) == \
        _invoke(stage, "config", TINY / recipe, *base, override)


def test_sft_run_and_config_with_old_train_and_check_aliases():
    new = _invoke("sft", "config", TINY / "sft.yaml", "trainer.max_steps=7")
    assert new == _invoke("sft", "check", TINY / "sft.yaml", "trainer.max_steps=7")
    assert '"max_steps": 7' in new
    helps = {cmd: _invoke("sft", cmd, "--help") for cmd in ("run", "train")}
    assert all("Train (or resume) an R-SFT run" in h for h in helps.values())
    top = _invoke("sft", "--help")
    assert " run " in top and " config " in top and " train " not in top and " check " not in top  # hidden


def test_rl_config_takes_the_same_grammar():
    # a child process: composing the verl config imports verl and sets the process environment it needs
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "guardrl.cli", "rl", "config", str(TINY / "rl.yaml"),
                          "clip.schedule=constant", "--no-validate"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "clip_schedule: constant" in out.stdout  # (log lines share stdout: match the YAML line)


def test_recipe_given_twice_or_missing_is_a_usage_error():
    res = CliRunner().invoke(app, ["reject", "config", str(TINY / "reject.yaml"), "--recipe", str(TINY / "reject.yaml")])
    assert res.exit_code == 2 and "recipe given twice" in res.output
    res = CliRunner().invoke(app, ["augment", "run"])
    assert res.exit_code == 2 and "missing RECIPE" in res.output


def test_split_args_rules():
    # no other positionals: the first free argument is the recipe
    assert split_args(["r.yaml", "a.b=1"]) == (Path("r.yaml"), [], ["a.b=1"])
    assert split_args(["a.b=1"], "old.yaml") == (Path("old.yaml"), [], ["a.b=1"])
    # with positionals (eval run [MODEL]): the recipe is the first *.yaml / *.yml argument, anywhere
    assert split_args(["models/m", "r.yml", "x=2"], positionals=("MODEL",), recipe_required=False) == (
        Path("r.yml"), ["models/m"], ["x=2"])
    assert split_args(["ckpt", "out"], positionals=("CHECKPOINT", "OUT"), recipe_required=False) == (
        None, ["ckpt", "out"], [])
    with pytest.raises(RecipeError, match="unexpected argument"):
        split_args(["m1", "m2"], positionals=("MODEL",), recipe_required=False)
    with pytest.raises(RecipeError, match="need a RECIPE"):
        split_args(["m1", "x=1"], positionals=("MODEL",), recipe_required=False)
    with pytest.raises(RecipeError, match="missing RECIPE"):
        split_args([])


def test_export_run_new_grammar_and_old_alias_write_the_same_model(tiny_model_dir, tmp_path):
    import hashlib

    def digest(d: Path) -> str:
        return hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()

    common = [f"export.checkpoint={tiny_model_dir}", "export.manifests=[]"]
    _invoke("export", "run", TINY / "export.yaml", *common, f"export.out={tmp_path / 'new'}")
    _invoke("export", "run", "--recipe", TINY / "export.yaml", *common, f"export.out={tmp_path / 'old'}")
    # positionals CHECKPOINT OUT after the recipe override the recipe's export.checkpoint / export.out
    _invoke("export", "run", TINY / "export.yaml", tiny_model_dir, tmp_path / "pos", "export.manifests=[]")
    assert digest(tmp_path / "new") == digest(tmp_path / "old") == digest(tmp_path / "pos") == digest(tiny_model_dir)


@pytest.mark.parametrize("group, recipe, override, keys, value", [
    ("synth", "rewrite_synth.yaml", "rewrite_synth.limit=8", ("limit",), 8),
    ("eval", "rewrite_eval.yaml", "rewrite_eval.batch_size=3", ("rewrite_eval", "batch_size"), 3),
])
def test_rewrite_groups_take_the_same_grammar(group, recipe, override, keys, value):
    doc = yaml.safe_load(_invoke("rewrite", group, "config", TINY / recipe, override))
    assert _get(doc, keys) == value
    assert _get(yaml.safe_load(_invoke("rewrite", group, "config", TINY / recipe)), keys) != value
    assert "Print the resolved" in _invoke("rewrite", group, "config", "--help")
    assert " run " in _invoke("rewrite", group, "--help")
