"""verl FSDP checkpoints -> one state dict, with the pieces of verl's own model merger.

Used by ``guardrl export`` (a stage never imports verl itself). The shards are read by the caller's
``load`` (guardrl's ``torch.load(weights_only=True)`` behind the pickle opt-in), not by verl's
``merge_and_save`` (which unpickles with ``weights_only=False`` and casts to bf16); dtypes are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def merge_fsdp_shards(weights_dir: Path, config_dir: Path, load: Callable[[Path], Any]) -> dict:
    """Merge ``model_world_size_{W}_rank_{r}.pt`` (r < W) of verl's ``actor/`` folder into one state dict.

    Raises:
        ValueError: a device mesh other than plain FSDP (no tensor parallelism).
    """
    from torch.distributed.tensor import DTensor
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger, merge_non_dtensor_shards

    merger = FSDPModelMerger(
        ModelMergerConfig(operation="test", backend="fsdp", local_dir=str(weights_dir),
                          hf_model_config_path=str(config_dir), trust_remote_code=False)
    )
    world_size = merger._get_world_size()
    shards = [load(weights_dir / f"model_world_size_{world_size}_rank_{r}.pt") for r in range(world_size)]
    mesh, mesh_dim_names = merger._extract_device_mesh_info(shards[0], world_size)
    total_shards, mesh_shape = merger._calculate_shard_configuration(mesh, mesh_dim_names)
    if total_shards != world_size or len(mesh_shape) != 1:
        raise ValueError(f"{weights_dir}: mesh {mesh_dim_names} {mesh_shape} not supported (FSDP without TP only)")
    merged: dict = {}
    for key in sorted(shards[0]):
        parts = [s[key] for s in shards]
        if isinstance(parts[0], DTensor):
            placements = tuple(parts[0].placements)
            if mesh_dim_names[0] in ("dp", "ddp"):
                placements = placements[1:]
            merged[key] = merger._merge_by_placement([t._local_tensor for t in parts], placements[0])
        else:
            merged[key] = merge_non_dtensor_shards(key, parts)
    return merged
