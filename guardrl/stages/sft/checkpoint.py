"""Resumable SFT checkpoints: per-rank safetensors shards plus JSON, never pickle.

A checkpoint is a folder ``<output_dir>/checkpoints/step_<N>/``::

    model-rank<r>.safetensors   this rank's shards of the FSDP2 model (DTensor local tensors)
    optim-rank<r>.safetensors   this rank's shards of the AdamW state, keys ``<param fqn>::<state name>``
    rng-rank<r>.safetensors     this rank's torch CPU (and CUDA) RNG state
    rng-rank<r>.json            this rank's Python and NumPy RNG state
    optim_groups.json           AdamW param groups (lr, betas, ... and parameter names)
    trainer_state.json          step, epoch, position in the epoch, scheduler state, world size

All ranks write into a hidden ``.step_<N>.tmp`` folder; rank 0 renames it into place once every
rank is done, so a folder named ``step_<N>`` is always complete. Loading uses ``safetensors`` and
``json`` only (no ``torch.load``). Shards are tied to the world size they were written with
(checked on load); the final Hugging Face folder is the portable artefact.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor

from guardrl.core.atomic import atomic_write_text

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step_(\d+)$")
TRAINER_STATE = "trainer_state.json"


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and (p / TRAINER_STATE).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    cks = list_checkpoints(root)
    return cks[-1] if cks else None


def _local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of ``t`` as a standalone contiguous CPU tensor (safetensors forbids shared storage)."""
    if isinstance(t, DTensor):
        t = t.to_local()
    return t.detach().to("cpu", copy=True).contiguous()


def _rebuild(template: Any, local: torch.Tensor) -> Any:
    """``local`` placed like ``template`` (a DTensor shard or a plain tensor)."""
    if isinstance(template, DTensor):
        return DTensor.from_local(
            local.to(template.to_local().device, template.dtype),
            template.device_mesh,
            template.placements,
            run_check=False,
            shape=template.shape,
            stride=template.stride(),
        )
    if isinstance(template, torch.Tensor):
        return local.to(template.device, template.dtype)
    return template


def _json_default(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint's JSON")


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["torch_cuda"] = torch.cuda.get_rng_state()
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["torch_cuda"])
    v, state, gauss = meta["python"]
    random.setstate((v, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(
    root: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write a complete checkpoint for ``step`` (collective: every rank calls it). Returns its path.

    ``trainer_state`` (JSON-able: step, epoch, scheduler state, ...) is written by rank 0. After
    the new folder is in place, all but the newest ``keep_last`` checkpoints are deleted.
    """
    root = Path(root)
    rank, world = dist.get_rank(), dist.get_world_size()
    final = step_dir(root, step)
    tmp = root / f".{final.name}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    model_sd = get_model_state_dict(model)
    save_file({k: _local(v) for k, v in model_sd.items()}, str(tmp / f"model-rank{rank:05d}.safetensors"))
    optim_sd = get_optimizer_state_dict(model, optimizer)
    flat = {f"{fqn}::{name}": _local(v) for fqn, st in optim_sd["state"].items() for name, v in st.items()}
    save_file(flat, str(tmp / f"optim-rank{rank:05d}.safetensors"))
    rng_tensors, rng_meta = _rng_state()
    save_file(rng_tensors, str(tmp / f"rng-rank{rank:05d}.safetensors"))
    (tmp / f"rng-rank{rank:05d}.json").write_text(json.dumps(rng_meta))
    if rank == 0:
        groups = json.dumps(optim_sd["param_groups"], default=_json_default)
        (tmp / "optim_groups.json").write_text(groups)
        state = dict(trainer_state, world_size=world, step=step)
        atomic_write_text(tmp / TRAINER_STATE, json.dumps(state, indent=2, default=_json_default))
    dist.barrier()
    if rank == 0:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimizer and RNG state from ``path`` (collective); return the trainer state.

    Raises:
        ValueError: the checkpoint was written with another world size.
    """
    path = Path(path)
    rank, world = dist.get_rank(), dist.get_world_size()
    state = json.loads((path / TRAINER_STATE).read_text())
    if state["world_size"] != world:
        raise ValueError(f"{path}: written by {state['world_size']} ranks, this run has {world}; "
                         "resume with the same resources.num_workers (or start from the hf/ folder)")
    model_local = load_file(str(path / f"model-rank{rank:05d}.safetensors"))
    template = get_model_state_dict(model)
    missing = sorted(set(template) - set(model_local))
    if missing:
        raise ValueError(f"{path}: model tensors missing from the checkpoint: {missing[:5]}")
    set_model_state_dict(model, {k: _rebuild(t, model_local[k]) for k, t in template.items()})

    optim_local = load_file(str(path / f"optim-rank{rank:05d}.safetensors"))
    template_o = get_optimizer_state_dict(model, optimizer)
    new_state: dict[str, dict[str, Any]] = {}
    for fqn, st in template_o["state"].items():
        new_state[fqn] = {name: _rebuild(t, optim_local[f"{fqn}::{name}"]) for name, t in st.items()}
    groups = json.loads((path / "optim_groups.json").read_text())
    set_optimizer_state_dict(model, optimizer, {"state": new_state, "param_groups": groups})

    rng_tensors = load_file(str(path / f"rng-rank{rank:05d}.safetensors"))
    rng_meta = json.loads((path / f"rng-rank{rank:05d}.json").read_text())
    _set_rng_state(rng_tensors, rng_meta)
    log.info("resumed from %s (step %d)", path, state["step"])
    return state
