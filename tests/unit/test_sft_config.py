"""SFTConfig: defaults are the paper's, every field has a docstring, bad values name the field."""

from __future__ import annotations

import ast
import inspect
from dataclasses import fields

import pytest

from guardrl.core.recipe import RecipeError
from guardrl.stages.sft import config as config_mod
from guardrl.stages.sft.config import SFTConfig, from_recipe


def test_defaults_are_the_papers_stage_1():
    c = SFTConfig()
    assert (c.optim.lr, c.trainer.epochs, c.trainer.global_batch_size, c.data.max_seq_len) == (5e-5, 3, 192, 2048)
    assert c.model.dtype == "bfloat16"
    assert c.grad_accum_steps == 192  # 1 rank x micro batch 1


def test_every_field_has_a_docstring():
    tree = ast.parse(inspect.getsource(config_mod))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
            body = node.body
            for i, stmt in enumerate(body):
                if isinstance(stmt, ast.AnnAssign):
                    nxt = body[i + 1] if i + 1 < len(body) else None
                    assert isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant), (
                        f"{node.name}.{stmt.target.id} has no docstring")
    assert {f.name for f in fields(SFTConfig)} >= {"model", "data", "optim", "trainer", "checkpoint", "resources"}


@pytest.mark.parametrize(("override", "match"), [
    ({"optim": {"lr": 0}}, "optim.lr"),
    ({"model": {"dtype": "fp8"}}, "model.dtype"),
    ({"resources": {"launcher": "slurm"}}, "launcher"),
    ({"trainer": {"global_batch_size": 10, "micro_batch_size": 4}}, "multiple"),
    ({"optim": {"warmup_ratio": 1.0}}, "warmup_ratio"),
    ({"checkpoint": {"keep_last": 0}}, "keep_last"),
    ({"data": {"unknown": 1}}, "unknown"),
    ({"data": {"balance": "oversample"}}, "data.balance"),
])
def test_invalid_values_are_recipe_errors(override, match):
    with pytest.raises(RecipeError, match=match):
        from_recipe({"_recipe_path": "r.yaml", **override})


def test_round_trip_through_a_dict():
    c = from_recipe({"trainer": {"global_batch_size": 8, "micro_batch_size": 2}, "resources": {"num_workers": 2}})
    assert c.grad_accum_steps == 2
    assert from_recipe(c.to_dict()) == c


def test_local_cluster_cpus_shrink_the_per_worker_request():
    from guardrl.stages.sft.api import _fit_local_cpus

    cfg = SFTConfig()
    cfg.resources.cpus_per_worker, cfg.resources.num_workers = 2, 1
    _fit_local_cpus(cfg, 4.0)
    assert cfg.resources.cpus_per_worker == 2  # fits: unchanged
    _fit_local_cpus(cfg, 1.0)
    assert cfg.resources.cpus_per_worker == 1
    cfg.resources.num_workers = 3
    with pytest.raises(RecipeError, match="num_workers=3"):
        _fit_local_cpus(cfg, 2.0)
