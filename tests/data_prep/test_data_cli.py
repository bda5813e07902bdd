"""`guardrl data ...` commands and the purity of the data modules."""

from __future__ import annotations

import subprocess
from pathlib import Path

from typer.testing import CliRunner

from guardrl.stages.data.cli import app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"


def test_list_convert_inspect(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0 and "guard_mini" in r.stdout and "wildguardtest" in r.stdout
    r = runner.invoke(app, ["convert", "simple-safety-tests", "--src", str(FIXTURES / "simple_safety_tests"),
                            "--out", str(tmp_path / "sst")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["inspect", str(tmp_path / "sst")])
    assert r.exit_code == 0 and "2 rows in 1 shard(s)" in r.stdout
    r = runner.invoke(app, ["convert", "nope", "--src", ".", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "unknown converter" in r.output


def test_make_data_target_builds_into_out():
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run(["make", "-n", "data", "OUT=/tmp/somewhere"], cwd=repo, capture_output=True, text=True)
    assert "data_prep.guard_mini --out /tmp/somewhere" in r.stdout
