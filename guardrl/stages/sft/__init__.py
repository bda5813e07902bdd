"""Stage 1, R-SFT: multimodal reasoning SFT of Qwen2.5-VL on guardrl Parquet (FSDP2 on Ray Train).

Python API::

    from guardrl.stages.sft import load_config, train
    hf_dir = train("recipes/tiny/sft.yaml", ["trainer.max_steps=20"])   # -> <output_dir>/hf
    cfg = load_config("recipes/tiny/sft.yaml"); cfg.trainer.max_steps = 20; train(cfg)

Command line: ``guardrl sft train RECIPE [key=value ...]``, ``guardrl sft evaluate MODEL_DIR``.
"""

from __future__ import annotations

from guardrl.stages.sft.config import SFTConfig, from_recipe, load_config

__all__ = ["SFTConfig", "from_recipe", "load_config", "train"]


def train(cfg, overrides=()):  # noqa: ANN001 - thin lazy wrapper, see guardrl.stages.sft.api.train
    """Run R-SFT and return the Hugging Face output folder (see :func:`guardrl.stages.sft.api.train`)."""
    from guardrl.stages.sft.api import train as _train

    return _train(cfg, overrides)
