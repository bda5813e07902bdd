"""Export an SFT or RL checkpoint as a self-contained Hugging Face folder.

Inputs it understands (:func:`detect_checkpoint`):

* a Hugging Face folder (what the SFT trainer saves as ``<output_dir>/hf``; the ``output_dir``
  itself is accepted too): ``config.json`` + weights;
* a verl FSDP checkpoint (what the RL trainer saves): an ``actor/`` folder with
  ``model_world_size_W_rank_R.pt`` shards, ``fsdp_config.json`` and a
  ``huggingface/`` folder (config + processor); also its parents
  ``global_step_N/`` and the trainer's checkpoint root (``latest_checkpointed_iteration.txt``).
  The shards are merged with the pieces of verl's own model merger
  (:class:`verl.model_merger.fsdp_model_merger.FSDPModelMerger`: world size, device
  mesh, placements), but loaded with ``torch.load(weights_only=True)`` and kept in
  their own dtype (verl's ``merge_and_save`` unpickles with ``weights_only=False`` and casts to bf16).

Pickle-based weights (``.bin``, ``.pt``, ``.pth``, ``.ckpt``) are refused unless
``allow_pickle=True``; even then they are read with ``torch.load(weights_only=True)``,
which unpickles tensors and containers only, never arbitrary objects.

The output folder holds safetensors weights, ``config.json``, the processor with its
chat template, ``generation_config.json``, a model card ``README.md`` (base model,
recipe, data manifest hashes, evaluation summary) and ``guardrl_export.json`` (the
same facts, machine-readable). It is written to a temporary folder and renamed into
place only after it reloads with transformers' Auto classes (no ``trust_remote_code``).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrl.core.provenance import git_commit, sha256_file
from guardrl.stages.export.model_card import CardError, eval_summary, manifest_entries, model_card

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_SHARD_RE = re.compile(r"^model_world_size_(\d+)_rank_(\d+)\.pt$")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# Architectures vLLM 0.24 serves natively (its model registry); checked when vLLM is not installed.
VLLM_NATIVE_ARCHS = frozenset({"Qwen2_5_VLForConditionalGeneration", "Qwen2VLForConditionalGeneration",
                               "Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM"})


class ExportError(RuntimeError):
    """A checkpoint that cannot be exported; the message says why and what to do."""


@dataclass(frozen=True)
class Checkpoint:
    """A located checkpoint. ``kind`` is ``"hf"`` or ``"verl_fsdp"``."""

    kind: str
    weights_dir: Path  # HF folder, or verl's actor/ folder with the shards
    config_dir: Path  # where config.json / processor live
    world_size: int = 1


@dataclass
class ExportOptions:
    """What :func:`export_checkpoint` writes and checks (every field is a recipe field under ``export:``).

    Attributes:
        dtype: ``auto`` keeps the checkpoint's dtype; else cast (``bfloat16`` for 3B/7B releases).
        allow_pickle: accept ``.bin``/``.pt`` weights (still ``weights_only=True``).
        processor: folder to take the processor/chat template from when the checkpoint lacks one.
        base_model: name of the base model, for the model card.
        recipe: recipe file(s) that trained the model, hashed into the card.
        manifests: data ``manifest.json`` files, hashed into the card.
        eval_results: an evaluation ``results.json`` to summarise in the card.
        expected_parameters: the parameter count the recipe expects; a mismatch is an error.
        generation: generation config overrides (``max_new_tokens``, ``do_sample``, ...).
    """

    dtype: str = "auto"
    allow_pickle: bool = False
    processor: str | None = None
    base_model: str | None = None
    recipe: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    eval_results: str | None = None
    expected_parameters: int | None = None
    generation: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- locating


def _pickle_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)


def detect_checkpoint(path: str | Path) -> Checkpoint:
    """Find out what ``path`` holds.

    Raises:
        ExportError: nothing exportable at ``path``.
    """
    p = Path(path)
    if not p.is_dir():
        raise ExportError(f"{p}: not a directory")
    latest = p / "latest_checkpointed_iteration.txt"
    if latest.is_file():
        step = latest.read_text().strip()
        return detect_checkpoint(p / f"global_step_{step}")
    if (p / "actor").is_dir() and not (p / "config.json").exists():
        return detect_checkpoint(p / "actor")
    if (p / "hf" / "config.json").is_file() and not (p / "config.json").exists():
        return detect_checkpoint(p / "hf")  # the SFT trainer's output_dir: its final HF folder
    if (p / "trainer_state.json").is_file() and list(p.glob("model-rank*.safetensors")):
        raise ExportError(
            f"{p}: a resumable SFT training checkpoint (per-rank shards tied to their world size); "
            "export the SFT run's final Hugging Face folder <output_dir>/hf instead"
        )
    shards = [m for f in p.glob("model_world_size_*_rank_*.pt") if (m := _SHARD_RE.match(f.name))]
    if shards:
        world = {int(m.group(1)) for m in shards}
        if len(world) != 1:
            raise ExportError(f"{p}: shards of several world sizes {sorted(world)}")
        ws = world.pop()
        ranks = {int(m.group(2)) for m in shards}
        if ranks != set(range(ws)):
            raise ExportError(f"{p}: world size {ws} but shards for ranks {sorted(ranks)} (missing shards)")
        hf = p / "huggingface"
        if not (hf / "config.json").is_file():
            raise ExportError(f"{p}: verl checkpoint without huggingface/config.json")
        return Checkpoint("verl_fsdp", p, hf, ws)
    if (p / "config.json").is_file():
        return Checkpoint("hf", p, p)
    raise ExportError(
        f"{p}: neither a Hugging Face folder (config.json) nor a verl FSDP checkpoint (model_world_size_*_rank_*.pt)"
    )


# ----------------------------------------------------------------------------- loading


def safe_torch_load(path: Path, allow_pickle: bool) -> Any:
    """``torch.load(weights_only=True)`` behind the opt-in.

    Raises:
        ExportError: ``allow_pickle`` is False, or the file holds more than tensors and containers.
    """
    import torch

    if not allow_pickle:
        raise ExportError(
            f"{path}: pickle-based weights are refused (a pickle can run code when loaded). "
            "Re-run with --allow-pickle if you trust this file; it is then read with torch.load(weights_only=True)."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything beyond tensors/containers
        raise ExportError(f"{path}: refused by torch.load(weights_only=True): {exc}") from exc


def _torch_dtype(name: str, default):
    import torch

    if name not in DTYPES:
        raise ExportError(f"dtype {name!r} not in {DTYPES}")
    return default if name == "auto" else getattr(torch, name)


def _auto_class(config):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return AutoModelForImageTextToText if config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES else (
        AutoModelForCausalLM)


def _load_config(config_dir: Path):
    from transformers import AutoConfig

    raw = json.loads((config_dir / "config.json").read_text())
    if raw.get("auto_map"):
        raise ExportError(f"{config_dir}/config.json has auto_map: it needs trust_remote_code, which guardrl never enables")
    return AutoConfig.from_pretrained(config_dir, trust_remote_code=False)


def _model_from_state_dict(config_dir: Path, state_dict: dict, dtype):
    """Build the model from a full state dict through ``from_pretrained`` (key renames, tying, buffers).

    The tensors are written as safetensors into a scratch folder beside the config, so transformers'
    own loading path (checkpoint key conversion, tied weights) applies exactly as for a Hub folder.
    """
    import shutil
    import tempfile

    from safetensors.torch import save_file

    config = _load_config(config_dir)
    with tempfile.TemporaryDirectory(prefix="guardrl-export-") as tmp:
        shutil.copy(config_dir / "config.json", Path(tmp) / "config.json")
        seen: set[int] = set()
        tensors = {}
        for k, v in state_dict.items():
            v = v.contiguous()
            if v.data_ptr() in seen:  # tied / shared storage: safetensors wants distinct buffers
                v = v.clone()
            seen.add(v.data_ptr())
            tensors[k] = v
        save_file(tensors, str(Path(tmp) / "model.safetensors"), metadata={"format": "pt"})
        del tensors
        sd_dtype = next((t.dtype for t in state_dict.values() if t.is_floating_point()), None)
        model = _auto_class(config).from_pretrained(
            tmp, dtype=dtype or sd_dtype or "auto", trust_remote_code=False, use_safetensors=True
        )
    return model.eval()


def _merge_verl_shards(ckpt: Checkpoint, allow_pickle: bool) -> dict:
    """Merge verl FSDP shards with verl's merger logic, loading with ``weights_only=True``, dtype kept."""
    from guardrl.integrations.verl.checkpoint import merge_fsdp_shards

    try:
        return merge_fsdp_shards(ckpt.weights_dir, ckpt.config_dir, lambda p: safe_torch_load(p, allow_pickle))
    except ValueError as exc:
        raise ExportError(str(exc)) from exc


def load_model(ckpt: Checkpoint, dtype: str = "auto", allow_pickle: bool = False):
    """Load a located checkpoint as a transformers model (``dtype="auto"``: the weights' own dtype).

    Raises:
        ExportError: pickle weights without opt-in, remote code, shapes that do not fit.
    """
    import torch

    config = _load_config(ckpt.config_dir)
    if ckpt.kind == "verl_fsdp":
        return _model_from_state_dict(ckpt.config_dir, _merge_verl_shards(ckpt, allow_pickle), _torch_dtype(dtype, None))
    folder = ckpt.weights_dir
    if list(folder.glob("*.safetensors")):
        cls = _auto_class(config)
        return cls.from_pretrained(
            folder, dtype=_torch_dtype(dtype, "auto"), trust_remote_code=False, use_safetensors=True
        ).eval()
    pickles = [p for p in _pickle_files(folder) if p.name not in ("training_args.bin",)]
    if not pickles:
        raise ExportError(f"{folder}: config.json but no *.safetensors or weight files")
    state: dict = {}
    for f in pickles:
        part = safe_torch_load(f, allow_pickle)
        if not isinstance(part, dict) or not all(isinstance(v, torch.Tensor) for v in part.values()):
            raise ExportError(f"{f}: not a state dict of tensors")
        state.update(part)
    return _model_from_state_dict(ckpt.config_dir, state, _torch_dtype(dtype, None))


# ----------------------------------------------------------------------------- export


def check_folder(folder: str | Path, expected_parameters: int | None = None) -> dict[str, Any]:
    """Reload an exported folder with the Auto classes and check it (vLLM's config check too, if installed).

    Returns:
        ``{"parameters": N, "architecture": name}``.

    Raises:
        ExportError: a missing file, pickle weights, remote code, or a parameter count mismatch.
    """
    from transformers import AutoProcessor

    folder = Path(folder)
    for name in ("config.json", "generation_config.json", "README.md"):
        if not (folder / name).is_file():
            raise ExportError(f"{folder}: {name} missing")
    if not list(folder.glob("*.safetensors")) or _pickle_files(folder):
        raise ExportError(f"{folder}: weights must be safetensors only")
    config = _load_config(folder)
    model = _auto_class(config).from_pretrained(folder, trust_remote_code=False)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=False)
    if not getattr(processor, "chat_template", None):
        raise ExportError(f"{folder}: the processor has no chat template")
    n = sum(p.numel() for p in model.parameters())
    if expected_parameters is not None and n != int(expected_parameters):
        raise ExportError(f"{folder}: {n:,} parameters, the recipe expects {int(expected_parameters):,}")
    arch = (config.architectures or ["?"])[0]
    _vllm_config_check(folder, arch)
    return {"parameters": n, "architecture": arch}


def _vllm_config_check(folder: Path, arch: str) -> None:
    """What vLLM's loader reads first: ``config.json`` with a known architecture, no remote code.

    With vLLM installed its own ``get_config`` parses the folder; without it (CPU machines) the
    same facts are checked here.

    Raises:
        ExportError: no ``architectures`` in the config, or vLLM's loader refuses the folder.
    """
    raw = json.loads((folder / "config.json").read_text())
    if not raw.get("architectures"):
        raise ExportError(f"{folder}/config.json has no 'architectures'; vLLM cannot pick a model class")
    try:
        from vllm.transformers_utils.config import get_config  # type: ignore[import-not-found]
    except ImportError:
        if arch not in VLLM_NATIVE_ARCHS:
            log.warning("vLLM not installed; architecture %s is not in the list vLLM serves natively", arch)
        return
    try:
        get_config(str(folder), trust_remote_code=False)
    except Exception as exc:  # vLLM raises several types
        raise ExportError(f"{folder}: vLLM's config loader refused it: {exc}") from exc


def export_checkpoint(checkpoint: str | Path, out: str | Path, options: ExportOptions | None = None) -> dict[str, Any]:
    """Export ``checkpoint`` (HF folder or verl FSDP checkpoint) into the HF folder ``out``.

    Returns:
        The metadata written to ``out/guardrl_export.json``.

    Raises:
        ExportError: see :func:`detect_checkpoint`, :func:`load_model`, :func:`check_folder`.
    """
    from transformers import AutoProcessor, GenerationConfig

    from guardrl.core.atomic import atomic_dir

    opts = options or ExportOptions()
    ckpt = detect_checkpoint(checkpoint)
    log.info("exporting %s checkpoint %s -> %s", ckpt.kind, ckpt.weights_dir, out)
    model = load_model(ckpt, opts.dtype, opts.allow_pickle)
    proc_src = Path(opts.processor) if opts.processor else ckpt.config_dir
    try:
        processor = AutoProcessor.from_pretrained(proc_src, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ExportError(f"no processor in {proc_src} ({exc}); pass --processor BASE_MODEL_DIR") from exc
    if not getattr(processor, "chat_template", None):
        raise ExportError(f"{proc_src}: processor without chat template; pass --processor BASE_MODEL_DIR")
    gen_src = ckpt.config_dir / "generation_config.json"
    gen = GenerationConfig.from_pretrained(ckpt.config_dir) if gen_src.is_file() else GenerationConfig.from_model_config(
        model.config)
    gen.update(**dict(opts.generation))
    model.generation_config = gen
    n_params = sum(p.numel() for p in model.parameters())
    if opts.expected_parameters is not None and n_params != int(opts.expected_parameters):
        raise ExportError(f"{checkpoint}: {n_params:,} parameters, the recipe expects {int(opts.expected_parameters):,}")
    out = Path(out)
    try:
        manifests = manifest_entries(list(opts.manifests))
        evaluation = eval_summary(opts.eval_results)
    except (CardError, OSError, ValueError) as exc:
        raise ExportError(str(exc)) from exc
    meta: dict[str, Any] = {
        "name": out.name,
        "base_model": opts.base_model,
        "architecture": type(model).__name__,
        "parameters": n_params,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "source": {"kind": ckpt.kind, "path": str(ckpt.weights_dir), "world_size": ckpt.world_size},
        "recipe": [{"path": str(r), "sha256": sha256_file(r)} for r in opts.recipe],
        "data_manifests": manifests,
        "evaluation": evaluation,
        "guardrl_commit": git_commit(),
    }
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        gen.save_pretrained(tmp)
        (tmp / "guardrl_export.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        (tmp / "README.md").write_text(model_card(meta))
        check_folder(tmp, opts.expected_parameters)
    log.info("exported %s (%s parameters, %s) to %s", meta["architecture"], f"{n_params:,}", meta["dtype"], out)
    return meta

