"""The R-SFT recipe on one rank: ``setup()`` builds model, data and optimizer, ``train()`` loops,
``cleanup()`` closes. :func:`recipe_main` is what every rank runs (inside a Ray Train worker or in
this process); the launcher lives in :mod:`guardrl.stages.sft.api`.

Model: Qwen2.5-VL loaded in fp32, activation checkpointing on the decoder layers, FSDP2
(``fully_shard``) on each decoder layer and on the root; with ``model.dtype=bfloat16`` on GPU the
forward/backward run in bf16 with fp32 master weights and fp32 gradient reduction.

Loss of one optimizer step (all ranks, all accumulation micro-steps together)::

    loss = sum of -log p(target token) over every target token in the global batch
           / number of target tokens in the global batch

so a sample's weight does not depend on how the global batch is split into ranks and micro-batches.
Logits are computed only at the positions that predict a target token (``logits_to_keep``): the prompt
(80% of the tokens on guard data) never reaches the LM head, which saves its matmul and the
``[B, L, vocab]`` fp32 logits (1.2 GB per 2,048-token sequence at Qwen2.5-VL's 151,936-token vocab).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from guardrl.stages.sft import checkpoint as ckpt
from guardrl.stages.sft.config import SFTConfig
from guardrl.stages.sft.data import (
    IGNORE_INDEX,
    SFTEncoder,
    StepSchedule,
    TableDataset,
    balance_weights,
    collate,
    dummy_image_item,
    length_estimates,
    load_sft_table,
    target_positions,
)
from guardrl.stages.sft.schedule import lr_factor, warmup_steps
from guardrl.tasks import get_task

log = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class SFTRecipe:
    """One rank of an R-SFT run (see the module docstring)."""

    def __init__(self, cfg: SFTConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.trainer.output_dir)
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.is_main = self.rank == 0
        self.global_step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.num_dropped = 0
        self.wandb_run: Any = None

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.cfg
        self.device = self._device()
        torch.manual_seed(cfg.trainer.seed)
        self._setup_processor()
        self._setup_data()
        self._setup_model()
        self._setup_optimizer()
        self._maybe_resume()
        if self.is_main:
            self._setup_logging()

    def _device(self) -> torch.device:
        if self.cfg.resources.use_gpu:
            if not torch.cuda.is_available():
                raise RuntimeError("resources.use_gpu=true but CUDA is not available on this worker")
            try:  # inside a Ray Train worker: the GPU Ray assigned to this rank
                from ray.train.torch import get_device

                device = get_device()
            except Exception:  # torchrun / in-process
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
            return device
        # On a shared CPU, more threads than reserved cores makes every op many times slower.
        torch.set_num_threads(self.cfg.resources.cpus_per_worker)
        return torch.device("cpu")

    def _setup_processor(self) -> None:
        from transformers import AutoProcessor

        d = self.cfg.data
        self.processor = AutoProcessor.from_pretrained(self.cfg.model.path)
        ip = self.processor.image_processor
        if d.image_max_pixels or d.image_min_pixels:
            size = dict(ip.size)
            if d.image_max_pixels:
                size["longest_edge"] = ip.max_pixels = d.image_max_pixels
            if d.image_min_pixels:
                size["shortest_edge"] = ip.min_pixels = d.image_min_pixels
            ip.size = size
        self.pad_id = self.processor.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")

    def _setup_data(self) -> None:
        cfg = self.cfg
        table, self.data_stats = load_sft_table(cfg.data.path, cfg.data.train_split, cfg.data.max_samples)
        task = get_task(cfg.task, cfg.task_modules)
        self.dataset = TableDataset(table, SFTEncoder(self.processor, cfg.data.max_seq_len, task))
        self.schedule = StepSchedule(
            num_samples=len(self.dataset),
            global_batch=cfg.trainer.global_batch_size,
            micro_batch=cfg.trainer.micro_batch_size,
            world_size=self.world,
            rank=self.rank,
            seed=cfg.trainer.seed,
            lengths=length_estimates(table),
            weights=balance_weights(table, cfg.data.balance),
        )
        total = cfg.trainer.epochs * self.schedule.steps_per_epoch
        self.total_steps = min(total, cfg.trainer.max_steps) if cfg.trainer.max_steps else total
        self.warmup = warmup_steps(self.total_steps, cfg.optim.warmup_ratio)
        self.collate = partial(collate, pad_id=self.pad_id, dummy=dummy_image_item(self.processor))
        if self.is_main:
            log.info("SFT data: %d rows, %d without a target skipped, %d trainable; %d steps/epoch, %d steps "
                     "(global batch %d = %d ranks x %d micro x %d accumulation)", self.data_stats.rows,
                     self.data_stats.no_target, self.data_stats.kept, self.schedule.steps_per_epoch,
                     self.total_steps, cfg.trainer.global_batch_size, self.world, cfg.trainer.micro_batch_size,
                     self.schedule.accum_steps)

    def _setup_model(self) -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
        from transformers import AutoModelForImageTextToText

        m = self.cfg.model
        on_gpu = self.device.type == "cuda"
        model = AutoModelForImageTextToText.from_pretrained(
            m.path, dtype=torch.float32, attn_implementation=m.attn_implementation
        )
        model.config.use_cache = False
        self.arch = type(model).__name__
        if m.activation_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        compute = _DTYPES[m.dtype]
        if compute != torch.float32 and not on_gpu:
            log.warning("model.dtype=%s requested on CPU: training in float32", m.dtype)
            compute = torch.float32
        mp = MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32) if compute != torch.float32 else None
        mesh = init_device_mesh(self.device.type, (self.world,))
        kw: dict[str, Any] = {"mesh": mesh}
        if mp is not None:
            kw["mp_policy"] = mp
        for layer in model.model.language_model.layers:
            fully_shard(layer, **kw)
        fully_shard(model, **kw)
        model.train()
        self.model = model
        self.n_params = sum(p.numel() for p in model.parameters())
        if self.is_main:
            log.info("model %s: %.1fM parameters, compute %s, FSDP2 over %d rank(s) on %s", self.arch,
                     self.n_params / 1e6, str(compute).removeprefix("torch."), self.world, self.device.type)

    def _setup_optimizer(self) -> None:
        o = self.cfg.optim
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay,
            foreach=self.device.type == "cuda",
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            partial(lr_factor, warmup=self.warmup, total=self.total_steps, min_ratio=o.min_lr_ratio),
        )

    def _maybe_resume(self) -> None:
        c = self.cfg.checkpoint
        root = self.out / "checkpoints"
        if c.resume == "never":
            if ckpt.latest_checkpoint(root) is not None:
                raise FileExistsError(f"{root} holds checkpoints and checkpoint.resume=never; "
                                      "use another trainer.output_dir or checkpoint.resume=auto")
            return
        path = ckpt.latest_checkpoint(root) if c.resume == "auto" else Path(c.resume)
        if path is None:
            return
        state = ckpt.load_checkpoint(path, self.model, self.optimizer)
        self.scheduler.load_state_dict(state["scheduler"])
        self.global_step, self.epoch, self.step_in_epoch = state["step"], state["epoch"], state["step_in_epoch"]
        self.num_dropped = state.get("num_dropped", 0)
        if self.is_main:
            self._truncate_metrics(self.global_step)

    def _setup_logging(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.out / "metrics.jsonl"
        (self.out / "sft_config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        if not self.cfg.logging.wandb:
            return
        import wandb

        id_file = self.out / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id)
        self.wandb_run = wandb.init(
            project=self.cfg.logging.project,
            name=self.cfg.logging.run_name or self.out.name,
            id=run_id,
            resume="allow",
            dir=str(self.out),
            config=self.cfg.to_dict(),
            mode=os.environ.get("WANDB_MODE", "offline"),
        )

    def _truncate_metrics(self, step: int) -> None:
        path = self.out / "metrics.jsonl"
        if path.exists():
            keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
            path.write_text("".join(ln + "\n" for ln in keep))

    # ------------------------------------------------------------------ train
    def _loader(self, epoch: int, start: int):
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=list(self.schedule.iter_from(epoch, start)),
            collate_fn=self.collate,
            num_workers=self.cfg.data.num_workers,
        )

    def _micro_step(self, batch: dict[str, Any], scale: float) -> torch.Tensor:
        """Forward + backward of one micro-batch; returns the summed target NLL (detached)."""
        inputs = {k: v.to(self.device) for k, v in batch.items() if k in MODEL_INPUTS}
        labels = batch["labels"].to(self.device)
        keep = target_positions(labels)  # [K]: the only positions whose logits the loss reads
        out = self.model(**inputs, use_cache=False, logits_to_keep=keep)
        logits = out.logits.float()  # [B, K, V]
        target = labels[:, 1:][:, keep]  # [B, K]
        nll = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
        (nll * scale).backward()
        return nll.detach()

    def _all_sum(self, *values: float) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def train(self) -> None:
        cfg = self.cfg
        bar = None
        if self.is_main and cfg.logging.progress_bar:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.global_step, desc="sft", dynamic_ncols=True)
        every = cfg.checkpoint.every_steps
        window_tokens, window_t0 = 0.0, time.perf_counter()
        while self.global_step < self.total_steps:
            loader = iter(self._loader(self.epoch, self.step_in_epoch))
            while self.global_step < self.total_steps:
                micro = [next(loader) for _ in range(self.schedule.accum_steps)]
                local_target = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro)
                local_tokens = sum(int(b["attention_mask"].sum()) for b in micro)
                local_dropped = sum(b["num_dropped"] for b in micro)
                n_target, n_tokens, dropped = self._all_sum(local_target, local_tokens, local_dropped)
                scale = self.world / max(n_target, 1.0)
                nll_sum = torch.zeros((), dtype=torch.float64, device=self.device)
                for i, b in enumerate(micro):
                    self.model.set_requires_gradient_sync(i == len(micro) - 1)
                    nll_sum += self._micro_step(b, scale).double()
                grad_norm = self._clip()
                lr = self.scheduler.get_last_lr()[0]
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                dist.all_reduce(nll_sum)
                self.global_step += 1
                self.step_in_epoch += 1
                self.num_dropped += int(dropped)
                window_tokens += n_tokens
                if self.global_step % cfg.trainer.log_every == 0 or self.global_step == self.total_steps:
                    elapsed = time.perf_counter() - window_t0
                    row = {"step": self.global_step, "epoch": self.epoch, "loss": float(nll_sum) / max(n_target, 1.0),
                           "lr": lr, "grad_norm": grad_norm, "tokens_per_s": window_tokens / max(elapsed, 1e-9),
                           "target_tokens": int(n_target), "dropped_over_cutoff": self.num_dropped}
                    self._log(row, bar)
                    window_tokens, window_t0 = 0.0, time.perf_counter()
                if bar is not None:
                    bar.update(1)
                epoch_done = self.step_in_epoch == self.schedule.steps_per_epoch
                if epoch_done:
                    self.epoch, self.step_in_epoch = self.epoch + 1, 0
                if every and self.global_step % every == 0 and self.global_step < self.total_steps:
                    self.save()
                if epoch_done:
                    break
        if bar is not None:
            bar.close()
        if ckpt.latest_checkpoint(self.out / "checkpoints") != ckpt.step_dir(self.out / "checkpoints", self.global_step):
            self.save()
        if self.cfg.checkpoint.save_hf:
            self.export_hf(self.out / "hf")

    def _clip(self) -> float:
        max_norm = self.cfg.optim.max_grad_norm or math.inf
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        return float(norm)

    def _log(self, row: dict[str, Any], bar: Any) -> None:
        if not self.is_main:
            return
        with self.metrics_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if bar is not None:
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", tok_s=f"{row['tokens_per_s']:.0f}")
        else:
            log.info("step %d loss %.4f lr %.2e tokens/s %.0f", row["step"], row["loss"], row["lr"], row["tokens_per_s"])
        if self.wandb_run is not None:
            self.wandb_run.log({f"train/{k}": v for k, v in row.items() if k != "step"}, step=row["step"])

    # ------------------------------------------------------------------ save
    def save(self) -> Path:
        state = {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "total_steps": self.total_steps,
            "scheduler": self.scheduler.state_dict(),
            "num_dropped": self.num_dropped,
            "seed": self.cfg.trainer.seed,
        }
        path = ckpt.save_checkpoint(self.out / "checkpoints", self.global_step, self.model, self.optimizer, state,
                                    keep_last=self.cfg.checkpoint.keep_last)
        if self.is_main:
            log.info("checkpoint: %s", path)
        return path

    def export_hf(self, dest: Path) -> None:
        """Gather the full weights on rank 0 and save model + processor as a Hugging Face folder."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        from guardrl.core.atomic import atomic_dir

        sd = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.is_main:
            dtype = _DTYPES[self.cfg.checkpoint.hf_dtype]
            sd = {k: v.to(dtype) for k, v in sd.items()}
            with atomic_dir(dest) as tmp:
                self.model.save_pretrained(tmp, state_dict=sd, safe_serialization=True)
                config = self.model.config
                config.architectures = [self.arch]
                config.use_cache = True
                config.dtype = dtype
                config.save_pretrained(tmp)
                self.processor.save_pretrained(tmp)
                (tmp / "guardrl_sft.json").write_text(json.dumps(
                    {"step": self.global_step, "base_model": self.cfg.model.path, "config": self.cfg.to_dict()}, indent=2))
            log.info("Hugging Face model + processor: %s", dest)
        dist.barrier()

    def cleanup(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def recipe_main(cfg_dict: dict[str, Any]) -> str:
    """Run the recipe on this rank (the process group must exist). Returns the HF output folder."""
    from guardrl.stages.sft.config import from_recipe

    cfg = from_recipe(cfg_dict)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    recipe = SFTRecipe(cfg)
    try:
        recipe.setup()
        recipe.train()
    finally:
        recipe.cleanup()
    return str(Path(cfg.trainer.output_dir) / "hf")
