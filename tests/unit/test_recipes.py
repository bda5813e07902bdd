"""Every recipe under recipes/ loads, says in its header how to run it, and validates.

Generic over stages: each YAML must parse with guardrl's safe loader and start with a comment
naming the command (``make <target>`` or ``guardrl ...``). Stages with a config validator are
checked with it (SFT: :func:`guardrl.stages.sft.config.from_recipe`); the 3B/7B SFT recipes are further
checked against the real Qwen2.5-VL configs (no weights, no GPU).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guardrl.core.recipe import load_recipe

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
ALL = sorted(RECIPES_DIR.rglob("*.yaml")) + sorted(RECIPES_DIR.rglob("*.yml"))
SFT = [p for p in ALL if p.stem in ("sft", "rewrite_sft")]
_COMMAND = re.compile(r"^#.*\b(make [a-z][\w-]*|guardrl [a-z][\w-]*)")


def _id(p: Path) -> str:
    return str(p.relative_to(RECIPES_DIR))


def test_recipes_exist():
    assert {_id(p) for p in SFT} >= {"tiny/sft.yaml", "qwen2_5_vl_3b/sft.yaml", "qwen2_5_vl_7b/sft.yaml",
                                     "tiny/rewrite_sft.yaml", "qwen2_vl_7b/rewrite_sft.yaml",
                                     "qwen2_5_vl_3b/rewrite_sft.yaml", "qwen2_5_vl_7b/rewrite_sft.yaml"}


@pytest.mark.parametrize("path", [p for p in SFT if p.stem == "rewrite_sft"], ids=_id)
def test_rewrite_sft_recipes_train_the_rewriter(path: Path):
    from guardrl.stages.sft.config import from_recipe
    from guardrl.tasks import get_task

    cfg = from_recipe(load_recipe(path))
    assert cfg.task == "rewrite" and get_task(cfg.task).name == "rewrite"
    if path.parent.name == "qwen2_vl_7b":  # VLMGuard-R1's rewriter base
        assert cfg.model.path == "Qwen/Qwen2-VL-7B-Instruct" and cfg.model.dtype == "bfloat16"


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_recipe_parses_and_has_command_header(path: Path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert _COMMAND.match(first), f"{_id(path)}: first line must be a comment with the command, got {first!r}"
    cfg = load_recipe(path)
    assert len([k for k in cfg if not str(k).startswith("_")]) > 0


@pytest.mark.parametrize("path", SFT, ids=_id)
def test_sft_recipe_validates(path: Path):
    from guardrl.stages.sft.config import from_recipe

    cfg = from_recipe(load_recipe(path))
    t = cfg.trainer
    assert t.global_batch_size == cfg.grad_accum_steps * t.micro_batch_size * cfg.resources.num_workers
    # any field can be overridden from the command line
    assert from_recipe(load_recipe(path, ["optim.lr=1e-5"])).optim.lr == 1e-5


def test_sft_override_typo_is_an_error():
    from guardrl.core.recipe import RecipeError
    from guardrl.stages.sft.config import from_recipe

    with pytest.raises(RecipeError, match="lrr"):
        from_recipe(load_recipe(RECIPES_DIR / "tiny" / "sft.yaml", ["optim.lrr=1e-5"]))
    with pytest.raises(RecipeError, match="global_batch_size"):
        from_recipe(load_recipe(RECIPES_DIR / "tiny" / "sft.yaml", ["trainer.global_batch_size=15"]))


@pytest.mark.parametrize("size", ["3b", "7b"])
def test_paper_sft_recipes_fit_the_real_models(size: str):
    """Paper settings, and the real Qwen2.5-VL shapes fit the recipe's cutoff and GPUs (meta device)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from guardrl.models.tiny import reference_config
    from guardrl.stages.sft.config import from_recipe

    cfg = from_recipe(load_recipe(RECIPES_DIR / f"qwen2_5_vl_{size}" / "sft.yaml"))
    assert (cfg.optim.lr, cfg.trainer.epochs, cfg.trainer.global_batch_size, cfg.data.max_seq_len) == (5e-5, 3, 192, 2048)
    assert cfg.model.dtype == "bfloat16" and cfg.resources.use_gpu
    assert cfg.gpus_assumed == cfg.resources.num_workers
    assert f"{size.upper()}-Instruct" in cfg.model.path

    mc = reference_config(size)
    vc = mc.vision_config
    # the largest image's vision tokens leave room for text within the cutoff
    per_token = (vc.patch_size * vc.spatial_merge_size) ** 2  # 28 x 28 pixels per merged token
    assert cfg.data.image_max_pixels // per_token < cfg.data.max_seq_len // 2
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(mc)
    n = sum(p.numel() for p in model.parameters())
    assert (3e9 if size == "3b" else 7e9) < n < (4.5e9 if size == "3b" else 9e9), n
    # FSDP2 full sharding: fp32 params + fp32 grads + AdamW's 2 fp32 moments = 16 bytes/param over the ranks,
    # plus the bf16 logits of one micro batch ([mb, 2048, vocab] and their fp32 copy for the loss)
    state_gb = 16 * n / cfg.resources.num_workers / 2**30
    logits_gb = cfg.trainer.micro_batch_size * cfg.data.max_seq_len * mc.text_config.vocab_size * 6 / 2**30
    assert state_gb + logits_gb < 60, (state_gb, logits_gb)  # leaves room for activations on 80 GB GPUs
