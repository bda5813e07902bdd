"""Model arguments a user can get wrong, through the command line: every command that takes a model says
"no such ... folder" for a missing path (never a Hub lookup), names the missing files of an incomplete folder,
and exits non-zero (2, a user error)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


def _run_cli(args, capsys) -> tuple[int, str]:
    """``guardrl ARGS`` in this process, through the real entry point (``guardrl.cli:app``)."""
    from guardrl.cli import app

    with pytest.raises(SystemExit) as exit_:
        app(list(args), prog_name="guardrl")
    return exit_.value.code, capsys.readouterr().err


def test_moderate_missing_folder_is_not_a_hub_lookup(tmp_path):
    """The issue's case, as a user types it (a subprocess, offline or not)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "0"}
    r = subprocess.run([sys.executable, "-m", "guardrl.cli", "moderate", "outputs/nope", "--text", "hi"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "outputs/nope: no such guard model folder" in r.stderr and "huggingface.co" not in r.stderr + r.stdout


@pytest.mark.parametrize("args", [
    ["moderate", "{m}", "--text", "hi"],
    ["serve", "{m}"],
    ["gateway", "{m}", "--upstream", "http://127.0.0.1:9/v1"],
    ["serve-chat", "{m}"],
    ["eval", "run", "{m}", "--bench", "b.jsonl", "--out", "{tmp}/out", "--no-wandb"],
    ["export", "check", "{m}"],
    ["export", "run", "{m}", "{tmp}/out"],
])
def test_every_model_command_names_the_problem(args, tmp_path, tiny_model_dir, capsys):
    missing = [a.format(m=str(tmp_path / "nope"), tmp=tmp_path) for a in args]
    code, err = _run_cli(missing, capsys)
    assert code == 2 and f"{tmp_path / 'nope'}: no such" in err and "folder" in err, err
    if args[:2] == ["export", "run"]:  # a checkpoint folder (HF or verl): export itself names what it lacks
        return
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").unlink()
    (broken / "processor_config.json").unlink()
    code, err = _run_cli([a.format(m=str(broken), tmp=tmp_path) for a in args], capsys)
    assert code == 2 and "incomplete" in err and "model.safetensors" in err and "processor_config.json" in err, err
    assert "missing: config.json" not in err  # config.json is there: only what is missing is named


def test_export_run_of_an_incomplete_checkpoint_names_it(tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()
    code, err = _run_cli(["export", "run", str(tmp_path / "ckpt"), str(tmp_path / "out")], capsys)
    assert code == 2 and str(tmp_path / "ckpt") in err, err
