"""Start an R-SFT run: as a Ray Train job (default) or in this process.

``resources.launcher=ray`` runs :func:`guardrl.stages.sft.trainer.recipe_main` on ``resources.num_workers``
Ray Train workers (``TorchTrainer``; gloo on CPU, NCCL on GPU) on the local Ray instance
(``ray.init()``) or the cluster named by ``RAY_ADDRESS``. ``resources.launcher=local`` runs it in
this process: world size 1, or the ranks torchrun describes in the environment.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from guardrl.core.recipe import RecipeError
from guardrl.integrations.ray import init_ray
from guardrl.stages.sft.config import SFTConfig, load_config

log = logging.getLogger(__name__)

# Environment the Ray workers need to behave like the driver.
_PASS_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "WANDB_API_KEY",
             "TOKENIZERS_PARALLELISM", "PYTHONPATH")


def _absolute(cfg: SFTConfig) -> SFTConfig:
    """Make local paths absolute: Ray workers do not share the driver's working directory."""
    cfg.trainer.output_dir = str(Path(cfg.trainer.output_dir).resolve())
    cfg.data.path = str(Path(cfg.data.path).resolve())
    model_path = Path(cfg.model.path)
    if model_path.exists() or cfg.model.build_tiny_if_missing:
        cfg.model.path = str(model_path.resolve())
    ck = cfg.checkpoint
    if ck.resume not in ("auto", "never"):
        ck.resume = str(Path(ck.resume).resolve())
    return cfg


def _prepare(cfg: SFTConfig) -> None:
    if cfg.model.build_tiny_if_missing and not Path(cfg.model.path).exists():
        from guardrl.models.tiny import build_tiny_model

        log.info("building the tiny model at %s", cfg.model.path)
        build_tiny_model(cfg.model.path, seed=0)
    Path(cfg.trainer.output_dir).mkdir(parents=True, exist_ok=True)


def train(cfg: SFTConfig | str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Path:
    """Run R-SFT to completion (or continue an interrupted run) and return the Hugging Face folder.

    Args:
        cfg: an :class:`SFTConfig`, or the path of a recipe YAML (then ``overrides`` apply).
        overrides: dotted ``key=value`` overrides for a recipe path.

    Returns:
        ``<trainer.output_dir>/hf``: the fine-tuned model and its processor (``save_pretrained``).

    Raises:
        guardrl.core.recipe.RecipeError: an invalid recipe.
    """
    if not isinstance(cfg, SFTConfig):
        cfg = load_config(cfg, overrides)
    cfg = _absolute(cfg.validate())
    _prepare(cfg)
    if cfg.resources.launcher == "ray":
        _run_ray(cfg)
    else:
        _run_local(cfg)
    return Path(cfg.trainer.output_dir) / "hf"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_local(cfg: SFTConfig) -> None:
    import torch.distributed as dist

    from guardrl.stages.sft.trainer import recipe_main

    created = False
    if not dist.is_initialized():
        backend = "nccl" if cfg.resources.use_gpu else "gloo"
        if "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ:  # torchrun
            dist.init_process_group(backend)
        else:
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
        created = True
    try:
        recipe_main(cfg.to_dict())
    finally:
        if created:
            dist.destroy_process_group()


def _ray_worker(config: dict) -> None:
    from guardrl.stages.sft.trainer import recipe_main

    recipe_main(config["cfg"])


def _fit_local_cpus(cfg: SFTConfig, cluster_cpus: float) -> None:
    """On a cluster started here, shrink ``resources.cpus_per_worker`` (also the torch thread count) to
    what this machine has, with a warning, instead of leaving the Ray Train workers pending forever."""
    r = cfg.resources
    fit = int(cluster_cpus // r.num_workers)
    if r.num_workers * r.cpus_per_worker > cluster_cpus:
        if fit < 1:
            raise RecipeError(f"resources.num_workers={r.num_workers} needs at least {r.num_workers} CPUs; "
                             f"this machine's Ray cluster has {cluster_cpus:g}")
        log.warning("resources.cpus_per_worker=%s x %d workers > %g CPUs on this machine: using %d per worker",
                    r.cpus_per_worker, r.num_workers, cluster_cpus, fit)
        r.cpus_per_worker = fit


def _run_ray(cfg: SFTConfig) -> None:
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    r = cfg.resources
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    env.setdefault("WANDB_MODE", "offline")
    started = init_ray(runtime_env={"env_vars": env})
    try:
        if started:
            _fit_local_cpus(cfg, ray.cluster_resources().get("CPU", 0))
        resources = {"CPU": r.cpus_per_worker}
        if r.use_gpu:
            resources["GPU"] = 1
        trainer = TorchTrainer(
            _ray_worker,
            train_loop_config={"cfg": cfg.to_dict()},
            torch_config=TorchConfig(backend="nccl" if r.use_gpu else "gloo"),
            scaling_config=ScalingConfig(num_workers=r.num_workers, use_gpu=r.use_gpu, resources_per_worker=resources),
            run_config=RunConfig(
                name=Path(cfg.trainer.output_dir).name,
                storage_path=str(Path(cfg.trainer.output_dir) / "ray"),
                failure_config=FailureConfig(max_failures=r.max_failures),
                worker_runtime_env={"env_vars": env},
            ),
        )
        trainer.fit()
    finally:
        if started:
            ray.shutdown()
