"""One rank of an R-SFT run that also records the gradients of the first optimizer step (no tests here).

Run as ``python sft_ranks_worker.py CONFIG.json GRADS.pt`` with ``RANK`` / ``WORLD_SIZE`` /
``MASTER_ADDR`` / ``MASTER_PORT`` set (as torchrun sets them). It runs what
:func:`guardrl.stages.sft.trainer.recipe_main` runs (``SFTRecipe.setup``, ``train``, ``cleanup``) on a gloo
process group, with one addition: an optimizer step pre-hook that gathers every parameter's full
gradient (FSDP2 shards it over the ranks) just before the first ``optimizer.step``, i.e. after the
trainer's micro-steps, its cross-rank reduction and its clipping. Rank 0 writes them to GRADS.pt
(``{parameter name: fp32 tensor}``); the losses are in the run's ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def main(config_path: str, grads_path: str) -> None:
    from guardrl.stages.sft.config import from_recipe
    from guardrl.stages.sft.trainer import SFTRecipe

    dist.init_process_group("gloo")  # env:// from RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT
    try:
        recipe = SFTRecipe(from_recipe(json.loads(Path(config_path).read_text())))
        recipe.setup()
        grads: dict[str, torch.Tensor] = {}

        def record(optimizer, args, kwargs) -> None:
            if grads:  # the first step only
                return
            for name, p in recipe.model.named_parameters():  # every rank: full_tensor() is a collective
                g = p.grad
                if g is None:
                    continue
                g = g.full_tensor() if hasattr(g, "full_tensor") else g
                grads[name] = g.detach().to(torch.float32).clone()

        recipe.optimizer.register_step_pre_hook(record)
        try:
            recipe.train()
        finally:
            recipe.cleanup()
        if recipe.is_main:
            tmp = grads_path + ".tmp"
            torch.save(grads, tmp)
            os.replace(tmp, grads_path)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
