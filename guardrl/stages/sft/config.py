"""The R-SFT configuration: nested dataclasses, one docstring per field, built from a YAML recipe.

A recipe (``recipes/<model>/sft.yaml``) maps one-to-one onto :class:`SFTConfig`;
unknown keys and wrong types are errors that name the recipe file. Defaults are
the paper's stage-1 settings (PAPER.md): full fine-tuning, bf16, AdamW, lr 5e-5
with a cosine schedule, 3 epochs, global batch 192, cutoff 2048 tokens.

This module is pure (no torch / ray import): recipes validate on any machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from guardrl.core.recipe import RecipeError

DTYPES = ("float32", "bfloat16", "float16")
LAUNCHERS = ("ray", "local")
BALANCE = ("none", "label", "label_presence")


@dataclass
class ModelConfig:
    path: str = "Qwen/Qwen2.5-VL-3B-Instruct"
    """Hugging Face folder (or Hub id with a local cache) of the base model and its processor."""
    build_tiny_if_missing: bool = False
    """CPU recipes only: when ``path`` does not exist, build the tiny offline Qwen2.5-VL there first."""
    dtype: str = "bfloat16"
    """Compute dtype. ``bfloat16``: fp32 master weights, bf16 forward/backward (FSDP2 mixed precision),
    fp32 gradient reduction. ``float32`` everywhere on CPU (bf16 requests fall back to fp32 there)."""
    attn_implementation: str = "sdpa"
    """``sdpa`` (works everywhere) or ``flash_attention_2`` (needs the [gpu] extra)."""
    activation_checkpointing: bool = True
    """Recompute decoder-layer activations in the backward pass (less memory, ~30% more compute)."""


@dataclass
class DataConfig:
    path: str = "outputs/data/guard-mini"
    """guardrl Parquet shards (``guardrl.core.shards``): a split dir (with ``train_split``) or one shard dir."""
    train_split: str | None = "train"
    """Split to train on when ``path`` is a split dir; ``null`` when ``path`` is a plain shard dir."""
    dev_split: str | None = "dev"
    """Split ``guardrl sft evaluate`` scores by default (not used during training)."""
    max_seq_len: int = 2048
    """Sequence cutoff in tokens (prompt + image tokens + target); targets are truncated to fit, samples
    whose prompt alone exceeds it are dropped (counted and logged)."""
    image_max_pixels: int | None = None
    """Cap on pixels per image given to the processor (``None``: the processor's own setting). Bounds the
    number of vision tokens: Qwen2.5-VL uses one token per 28x28 pixels."""
    image_min_pixels: int | None = None
    """Lower bound on pixels per image (``None``: the processor's own setting)."""
    max_samples: int | None = None
    """Use only the first N trainable rows (after dropping rows without a target); ``None``: all."""
    num_workers: int = 0
    """DataLoader worker processes per rank that encode samples (0: in the training process)."""
    balance: str = "none"
    """Class balancing by sampling weights (each epoch then draws its samples with replacement, seeded):
    ``none`` (each row once per epoch, the paper); ``label``: within each modality, harmful and unharmful
    requests get an equal share; ``label_presence``: within each modality, each (request label x response
    present or not) cell gets an equal share, split evenly between the response labels of its rows, so
    neither the class prior nor the presence of a response predicts a label (``guardrl.stages.sft.data.balance_weights``)."""


@dataclass
class OptimConfig:
    lr: float = 5e-5
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    warmup_ratio: float = 0.1
    """Fraction of the total optimizer steps spent in linear warm-up from 0 to ``lr``."""
    min_lr_ratio: float = 0.0
    """Cosine decay ends at ``lr * min_lr_ratio``."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (``0``: no clipping)."""


@dataclass
class TrainerConfig:
    output_dir: str = "outputs/sft/run"
    """Run folder: ``checkpoints/``, ``hf/`` (final model + processor), ``metrics.jsonl``, wandb files."""
    epochs: int = 3
    """Passes over the training data."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides ``epochs`` when smaller); ``None``: epochs decide."""
    global_batch_size: int = 192
    """Samples per optimizer step, summed over all ranks and accumulation micro-steps."""
    micro_batch_size: int = 1
    """Samples per forward/backward on one rank; accumulation steps = global / (micro x world size)."""
    seed: int = 42
    """Seed of the data order (a fresh permutation per epoch) and of torch's RNG."""
    log_every: int = 1
    """Log loss, lr and tokens/s every N optimizer steps (progress bar, metrics.jsonl, wandb)."""


@dataclass
class CheckpointConfig:
    every_steps: int = 500
    """Save a resumable checkpoint every N optimizer steps (and always at the end; ``0``: only at the end)."""
    keep_last: int = 2
    """Keep only the newest K step checkpoints (older ones are deleted after a save completes)."""
    resume: str = "auto"
    """``auto``: continue from the newest complete checkpoint in ``output_dir`` if any; ``never``: start
    fresh (fails if checkpoints exist); or a path to one checkpoint folder."""
    save_hf: bool = True
    """At the end, also save the model and its processor as a Hugging Face folder (``output_dir/hf``)."""
    hf_dtype: str = "bfloat16"
    """Dtype of the saved Hugging Face weights."""


@dataclass
class ResourcesConfig:
    launcher: str = "ray"
    """``ray``: a Ray Train job (local ``ray.init()``, or the cluster in ``RAY_ADDRESS``); ``local``: this
    process (world size 1, or torchrun's environment), e.g. for a short warm start inside another program."""
    num_workers: int = 1
    """Training ranks (one per GPU on GPU clusters). The global batch must divide by micro batch x workers."""
    use_gpu: bool = False
    """One GPU per rank and NCCL when True; CPU ranks and gloo otherwise."""
    cpus_per_worker: int = 1
    """CPU cores Ray reserves per rank; on CPU also torch's thread count per rank."""
    max_failures: int = 0
    """Ray Train restarts the job this many times after a worker failure; each restart resumes from the
    newest checkpoint."""


@dataclass
class LoggingConfig:
    wandb: bool = True
    """Log metrics and the config to wandb (``WANDB_MODE=offline`` unless set; ``wandb sync`` later)."""
    project: str = "guardrl"
    """wandb project."""
    run_name: str | None = None
    """wandb run name (default: the output folder's name)."""
    progress_bar: bool = True
    """Show a tqdm bar with loss, lr and tokens/s on rank 0."""


@dataclass
class SFTConfig:
    """Stage 1 (R-SFT) configuration; see each section's fields."""

    task: str = "guard"
    """The task (:func:`guardrl.tasks.get_task`) that renders each row's prompt and SFT target."""
    task_modules: list[str] = field(default_factory=list)
    """Modules (dotted names or ``.py`` paths) that register a task defined outside guardrl; imported in
    every training process before ``task`` is looked up."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Base model, precision, attention kernel, activation checkpointing."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training shards, cutoff, image size limits."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW, warm-up + cosine schedule, gradient clipping."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Output folder, epochs / steps, global and micro batch, seed, logging interval."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """When to save, how many to keep, resume policy, the final Hugging Face folder."""
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    """Launcher (Ray Train or in-process), ranks, GPUs, CPUs per rank, restarts."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """wandb and the progress bar."""
    gpus_assumed: int | None = None
    """Informational: the GPU count the recipe was sized for (``resources.num_workers`` on GPU)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["optim"]["betas"] = list(d["optim"]["betas"])
        return d

    @property
    def grad_accum_steps(self) -> int:
        """Micro-steps per optimizer step on each rank."""
        t = self.trainer
        return t.global_batch_size // (t.micro_batch_size * self.resources.num_workers)

    def validate(self, where: str = "<config>") -> SFTConfig:
        """Check cross-field rules.

        Raises:
            RecipeError: naming ``where`` and the offending field.
        """
        t, r, o, c, m = self.trainer, self.resources, self.optim, self.checkpoint, self.model

        def bad(msg: str) -> None:
            raise RecipeError(f"{where}: {msg}")

        from guardrl.tasks import check_task, task_modules

        self.task_modules = task_modules(self.task_modules)
        check_task(self.task, self.task_modules, where)
        if self.data.balance not in BALANCE:
            bad(f"data.balance {self.data.balance!r} not in {BALANCE}")
        if m.dtype not in DTYPES:
            bad(f"model.dtype {m.dtype!r} not in {DTYPES}")
        if c.hf_dtype not in DTYPES:
            bad(f"checkpoint.hf_dtype {c.hf_dtype!r} not in {DTYPES}")
        if r.launcher not in LAUNCHERS:
            bad(f"resources.launcher {r.launcher!r} not in {LAUNCHERS}")
        for name, value in (("trainer.global_batch_size", t.global_batch_size),
                            ("trainer.micro_batch_size", t.micro_batch_size),
                            ("trainer.epochs", t.epochs), ("trainer.log_every", t.log_every),
                            ("resources.num_workers", r.num_workers), ("data.max_seq_len", self.data.max_seq_len)):
            if value < 1:
                bad(f"{name} must be >= 1, got {value}")
        if t.global_batch_size % (t.micro_batch_size * r.num_workers):
            bad(f"trainer.global_batch_size {t.global_batch_size} is not a multiple of micro_batch_size "
                f"{t.micro_batch_size} x resources.num_workers {r.num_workers}")
        if t.max_steps is not None and t.max_steps < 1:
            bad(f"trainer.max_steps must be >= 1 or null, got {t.max_steps}")
        if not 0 < o.lr < 1:
            bad(f"optim.lr must be in (0, 1), got {o.lr}")
        if not 0 <= o.warmup_ratio < 1:
            bad(f"optim.warmup_ratio must be in [0, 1), got {o.warmup_ratio}")
        if not 0 <= o.min_lr_ratio <= 1:
            bad(f"optim.min_lr_ratio must be in [0, 1], got {o.min_lr_ratio}")
        if o.max_grad_norm < 0:
            bad(f"optim.max_grad_norm must be >= 0, got {o.max_grad_norm}")
        if c.every_steps < 0 or c.keep_last < 1:
            bad("checkpoint.every_steps must be >= 0 and checkpoint.keep_last >= 1")
        if c.resume not in ("auto", "never") and not c.resume:
            bad("checkpoint.resume must be 'auto', 'never' or a checkpoint path")
        if self.gpus_assumed is not None and r.use_gpu and self.gpus_assumed != r.num_workers:
            bad(f"gpus_assumed {self.gpus_assumed} != resources.num_workers {r.num_workers}")
        return self


def from_recipe(cfg: DictConfig | dict[str, Any]) -> SFTConfig:
    """Build and validate an :class:`SFTConfig` from a loaded recipe (see :func:`guardrl.core.recipe.load_recipe`).

    Keys starting with ``_`` (``_recipe_path``) are ignored.

    Raises:
        RecipeError: unknown keys, wrong types or invalid values, naming the recipe file.
    """
    where = str(cfg.get("_recipe_path", "<recipe>")) if hasattr(cfg, "get") else "<recipe>"
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    plain = {k: v for k, v in plain.items() if not str(k).startswith("_")}
    try:
        merged = OmegaConf.merge(OmegaConf.structured(SFTConfig), plain)
        obj = OmegaConf.to_object(merged)
    except Exception as exc:  # omegaconf ValidationError / ConfigKeyError
        raise RecipeError(f"{where}: {exc}".splitlines()[0]) from exc
    assert isinstance(obj, SFTConfig)
    obj.optim.betas = tuple(obj.optim.betas)  # type: ignore[assignment]
    return obj.validate(where)


def load_config(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> SFTConfig:
    """Load ``recipes/.../sft.yaml`` with dotted overrides into a validated :class:`SFTConfig`."""
    from guardrl.core.recipe import load_recipe

    return from_recipe(load_recipe(path, overrides))
