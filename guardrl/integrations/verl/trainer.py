"""verl's Ray PPO trainer plus guardrl's training metrics, started through ``run_ppo(task_runner_class=...)``.

verl 0.9.1's trainer (``verl/trainer/ppo/ray_trainer.py``) logs the reward's extra fields for
validation only (``val-aux/...``). :class:`GuardPPOTrainer` adds, every training step, the mean
of each part of the recipe's task's reward, named ``<task.metric_prefix>/<name>`` with the task's
``reward_metric_names`` (optional; a part it does not rename keeps its own name). For the guard:
``guard/format_rate``, ``guard/request_acc``, ``guard/response_acc``, ``guard/r_safety``,
``guard/reasoning_tokens``, ``guard/l_norm``, ``guard/eco_cost``; and, when the reward has ``format`` and
``r_safety`` parts, the advantages of the wrong answers (``guard/adv_wrong_pos_frac``,
``guard/adv_wrong_mean``, see :func:`wrong_advantage_metrics`), next to verl's own ``critic/score/mean``
(reward), ``response_length/mean`` and the loss's ``actor/guard/clip_bound``.
:class:`GuardTaskRunner` is verl's ``main_ppo_v0.TaskRunner`` building that trainer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import ray
from verl.trainer.main_ppo_v0 import BaseTaskRunner
from verl.trainer.ppo.ray_trainer import RayPPOTrainer


def reward_metric_keys(task: Any, parts: Any) -> dict[str, str]:
    """``{reward part: training metric}`` for ``task``: ``<metric_prefix>/<reward_metric_names[part] or part>``
    for every part but ``score`` (verl logs it as ``critic/score``)."""
    names = getattr(task, "reward_metric_names", None) or {}
    return {p: f"{task.metric_prefix}/{names.get(p, p)}" for p in parts if p != "score"}


def reward_metrics(non_tensor_batch: dict[str, Any], keys: dict[str, str]) -> dict[str, float]:
    """Means of the reward parts in a batch (NaN entries = a label the sample does not have), named by ``keys``."""
    out = {}
    for key, name in keys.items():
        if key not in non_tensor_batch:
            continue
        values = np.asarray(non_tensor_batch[key], dtype=np.float64)
        if values.size and not np.isnan(values).all():
            out[name] = float(np.nanmean(values))
    return out


def wrong_advantage_metrics(
    advantages: np.ndarray, response_mask: np.ndarray, r_safety: np.ndarray, fmt: np.ndarray, prefix: str = "guard"
) -> dict[str, float]:
    """How the length term treats wrong answers: among the well-formed answers that are not fully correct
    (``format == 1`` and ``r_safety < 1``), the share whose sequence advantage is positive
    (``guard/adv_wrong_pos_frac``) and their mean advantage (``guard/adv_wrong_mean``). The paper's
    reward gives a wrong answer that reasoned longer than its group a positive advantage by design.

    Args:
        advantages: ``[B, L]`` per-token advantages (GRPO: the sequence advantage on every response token).
        response_mask: ``[B, L]`` 1 on response tokens.
        r_safety: ``[B]`` the reward's safety part; fmt: ``[B]`` the format indicator.

    Returns:
        Both metrics, or ``{}`` when the batch has no wrong well-formed answer.
    """
    mask = np.asarray(response_mask, dtype=np.float64)
    seq_adv = (np.asarray(advantages, dtype=np.float64) * mask).sum(-1) / np.maximum(mask.sum(-1), 1.0)  # [B]
    wrong = (np.asarray(fmt, dtype=np.float64) == 1) & (np.asarray(r_safety, dtype=np.float64) < 1)
    if not wrong.any():
        return {}
    return {f"{prefix}/adv_wrong_pos_frac": float((seq_adv[wrong] > 0).mean()),
            f"{prefix}/adv_wrong_mean": float(seq_adv[wrong].mean())}


def _batch_wrong_advantage(batch: Any, prefix: str) -> dict[str, float]:
    nt = batch.non_tensor_batch
    if "advantages" not in batch.batch.keys() or "r_safety" not in nt or "format" not in nt:  # noqa: SIM118
        return {}
    return wrong_advantage_metrics(batch.batch["advantages"].float().cpu().numpy(),
                                   batch.batch["response_mask"].float().cpu().numpy(), nt["r_safety"], nt["format"],
                                   prefix)


def _task(config: Any) -> Any:
    """The recipe's task (``data.task`` / ``data.task_modules``, set by ``guardrl rl``)."""
    from guardrl.tasks import get_task

    data = config.data
    return get_task(data.get("task"), list(data.get("task_modules") or []))


def _pin_clip_step(worker: Any, step: int, total: int) -> None:
    """Runs inside an actor worker process: pin the dynamic-clip loss's step (0-based) and ``S``."""
    from guardrl.integrations.verl.policy_loss import set_clip_step

    set_clip_step(step, total)


def restore_loss_mode(policy_loss: Any, loss_mode: str | None) -> None:
    """Undo verl's driver-side rewrite of ``policy_loss.loss_mode`` under bypass mode.

    verl 0.9.1's ``apply_bypass_mode`` (``verl/trainer/ppo/rollout_corr_helper.py``) sets
    ``old_log_probs = rollout_log_probs`` and writes ``loss_mode = "bypass_mode"`` (plus the
    ``rollout_correction`` section) into the *driver's* config. The actor workers built their loss config
    at start-up and never see that write, so they keep applying the recipe's loss (``guardrl_dynamic_clip``);
    only the driver's copy would lie (and a trainer reading it would stop pinning the clip step).
    """
    if loss_mode is None or policy_loss.get("loss_mode") == loss_mode:
        return
    from omegaconf import open_dict

    with open_dict(policy_loss):
        policy_loss["loss_mode"] = loss_mode
        policy_loss.pop("rollout_correction", None)


class GuardPPOTrainer(RayPPOTrainer):
    """verl's ``RayPPOTrainer`` that pushes the training step to the clip schedule and logs the
    reward components of each training batch.

    The step: before each actor update, every actor worker's ``guardrl_dynamic_clip`` clock is
    pinned to ``global_steps - 1`` of ``total_training_steps`` (``policy_loss.set_clip_step``, run
    in the worker with Ray's ``__ray_call__``), so the bound is exact per step, also after a resume.
    With verl's bypass mode (old log-probs = the rollout's, no recomputation pass) the recipe's loss
    stays the one applied: see :func:`restore_loss_mode`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # verl's bypass mode (``algorithm.rollout_correction.bypass_mode``) rewrites the driver's
        # ``policy_loss.loss_mode`` to "bypass_mode" at its first step (``rollout_corr_helper.apply_bypass_mode``);
        # the workers keep the loss they were built with, so the recipe's loss is remembered here
        self._loss_mode = self.config.actor_rollout_ref.actor.policy_loss.get("loss_mode")

    def _update_actor(self, batch):
        restore_loss_mode(self.config.actor_rollout_ref.actor.policy_loss, self._loss_mode)
        if self._loss_mode == "guardrl_dynamic_clip":
            step, total = int(self.global_steps) - 1, int(self.total_training_steps)
            ray.get([w.__ray_call__.remote(_pin_clip_step, step, total) for w in self.actor_rollout_wg.workers])
        output = super()._update_actor(batch)
        task = _task(self.config)
        keys = reward_metric_keys(task, batch.meta_info.get("reward_extra_keys") or [])  # the reward's parts
        extra = {**reward_metrics(batch.non_tensor_batch, keys), **_batch_wrong_advantage(batch, task.metric_prefix)}
        if extra:
            output.meta_info.setdefault("metrics", {}).update({k: v for k, v in extra.items() if math.isfinite(v)})
        return output


class DriverTaskRunner(BaseTaskRunner):
    """verl's legacy TaskRunner, with :class:`GuardPPOTrainer` as the trainer.

    verl runs it as a Ray actor (:data:`GuardTaskRunner`): one more process that imports torch,
    transformers and verl (~7 s on a 2-core CPU) before anything starts. It only builds the datasets and
    drives the workers, and the driver has imported verl already, so ``entry.run`` calls it in the driver
    (on a local head, an attached cluster, a ``ray job submit`` entrypoint); only a Ray Client driver
    (``ray://``, a laptop away from the cluster) starts the actor.
    """

    def run(self, config):
        from omegaconf import OmegaConf
        from verl.trainer.ppo.utils import (
            create_rl_dataset,
            create_rl_sampler,
            need_critic,
            need_reference_policy,
        )
        from verl.utils.config import omega_conf_to_dataclass, validate_config
        from verl.utils.dataset.rl_dataset import collate_fn
        from verl.workers.config import HFModelConfig

        OmegaConf.resolve(config)
        actor_rollout_cls, ray_worker_group_cls = self.add_actor_rollout_worker(config)
        self.add_critic_worker(config)
        self.add_reward_model_resource_pool(config)
        self.add_teacher_model_resource_pool(config)
        self.add_ref_policy_worker(config, actor_rollout_cls)
        validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
        model_config: HFModelConfig = omega_conf_to_dataclass(config.actor_rollout_ref.model)
        tokenizer, processor = model_config.tokenizer, model_config.processor
        resource_pool_manager = self.init_resource_pool_mgr(config)
        data = config.data
        train_dataset = create_rl_dataset(
            data.train_files, data, tokenizer, processor, is_train=True, max_samples=data.get("train_max_samples", -1)
        )
        val_dataset = create_rl_dataset(
            data.val_files, data, tokenizer, processor, is_train=False, max_samples=data.get("val_max_samples", -1)
        )
        trainer = GuardPPOTrainer(
            config=config,
            tokenizer=tokenizer,
            processor=processor,
            role_worker_mapping=self.role_worker_mapping,
            resource_pool_manager=resource_pool_manager,
            ray_worker_group_cls=ray_worker_group_cls,
            train_dataset=train_dataset,
            val_dataset=val_dataset,
            collate_fn=collate_fn,
            train_sampler=create_rl_sampler(data, train_dataset),
        )
        trainer.init_workers()
        trainer.fit()
        _close_wandb()


GuardTaskRunner = ray.remote(DriverTaskRunner)  # the actor verl's run_ppo starts (a Ray Client driver)


def _close_wandb() -> None:
    """Finish wandb while its service is still up. Left to wandb's atexit hook, the teardown runs when Ray
    ends this actor, after the service has gone, and prints ``ConnectionResetError: Connection lost``
    (wandb's docs recommend an explicit ``wandb.teardown()`` where atexit is unreliable)."""
    import sys

    wandb = sys.modules.get("wandb")  # imported only if verl's tracker used it
    if wandb is not None:
        wandb.teardown()
