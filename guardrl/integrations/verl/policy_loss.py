"""``guardrl_dynamic_clip``: verl's clipped PPO/GRPO policy loss with a scheduled clip bound.

How a verl 0.9.1 config selects it (nothing in verl is patched)::

    actor_rollout_ref:
      actor:
        clip_ratio: 0.2                                  # eps (clip_ratio_low/high scale the same way)
        policy_loss:
          _target_: guardrl.integrations.verl.policy_loss.DynamicClipPolicyLossConfig
          loss_mode: guardrl_dynamic_clip
          clip_schedule: linear                          # linear (paper) | constant (ablation) | cosine
          clip_floor: 0.01                               # the bound never goes below this
          updates_per_step: 2                            # updates_per_step(cfg): ppo_epochs * train_batch_size // ppo_mini_batch_size
          # total_steps: null                            # default: actor.optim.total_training_steps

As Hydra overrides: ``actor_rollout_ref.actor.policy_loss._target_=guardrl.integrations.verl.policy_loss.DynamicClipPolicyLossConfig
actor_rollout_ref.actor.policy_loss.loss_mode=guardrl_dynamic_clip
+actor_rollout_ref.actor.policy_loss.clip_schedule=linear +actor_rollout_ref.actor.policy_loss.clip_floor=0.01
+actor_rollout_ref.actor.policy_loss.updates_per_step=2``. verl builds the actor config with Hydra's
``instantiate``, which imports this module in every actor worker and so registers the loss there
(``VERL_USE_EXTERNAL_MODULES=guardrl.integrations.verl.policy_loss`` does the same). With plain
``PolicyLossConfig`` the defaults above apply (``updates_per_step=1``).

Where the step comes from. verl 0.9.1 calls a policy loss with tensors and the actor config only
(``verl/workers/utils/losses.py: ppo_loss``); the global step is not passed. ``S`` is verl's own
``actor.optim.total_training_steps`` (the trainer writes it into the config before the workers
start). The current step ``s`` (from 0) is, in order:

1. an explicit clock, :func:`set_clip_step`: ``guardrl rl``'s trainer
   (:class:`guardrl.integrations.verl.trainer.GuardPPOTrainer`, ``trainer.use_v1=false``, the recipes' path)
   pins ``s = global_steps - 1`` in every actor worker before each update, so the bound is exact at
   every step, also right after a resume;
2. otherwise (``trainer.use_v1=true`` or any other trainer) the actor's optimizer: a torch
   optimizer-step hook (public ``torch.optim`` API) reads the optimizer's own ``step`` count and
   ``s = optimizer_updates // updates_per_step``. This cannot be exact after a resume: the first
   mini-batch, computed before the first optimizer update of the process, uses step 0 (bound ``eps``);
   an update verl skips for a non-finite gradient norm is not counted. The loss logs a warning saying
   so, once per process, the first time it runs without a pinned step.

The bound for both sides is ``schedule(eps_side, s, S, clip_floor)`` (``guardrl.core.clipping``), then
verl's own ``vanilla`` loss runs with it, so at ``s = 0`` this loss equals ``vanilla``. Metrics:
``guard/clip_bound`` (upper), ``guard/clip_bound_low``, ``guard/clip_step`` plus vanilla's;
verl's trainer logs actor metrics as ``actor/guard/clip_bound`` etc.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from verl.trainer.ppo.core_algos import (
    POLICY_LOSS_REGISTRY,
    compute_policy_loss_vanilla,
    register_policy_loss,
)
from verl.workers.config import PolicyLossConfig

from guardrl.core.clipping import DEFAULT_FLOOR, clip_bound, get_schedule

LOSS_NAME = "guardrl_dynamic_clip"
log = logging.getLogger(__name__)
UNPINNED_WARNING = (
    f"{LOSS_NAME}: no trainer pins the clip step (trainer.use_v1=true or a trainer other than guardrl's "
    "GuardPPOTrainer); the step is counted from the actor optimizer's updates, so after a resume the first "
    "mini-batch uses step 0 (the full eps) instead of the scheduled bound")


@dataclass
class DynamicClipPolicyLossConfig(PolicyLossConfig):
    """verl's ``PolicyLossConfig`` plus the clip schedule (select it with ``_target_``).

    Args:
        clip_schedule: a name in ``guardrl.core.clipping`` (linear | constant | cosine).
        clip_floor: minimum clip bound.
        updates_per_step: optimizer updates per training step (:func:`updates_per_step`); turns the optimizer's
            update count into the global step.
        total_steps: ``S``; ``None`` = ``actor.optim.total_training_steps``.
    """

    _target_: str = "guardrl.integrations.verl.policy_loss.DynamicClipPolicyLossConfig"
    loss_mode: str = LOSS_NAME
    clip_schedule: str = "linear"
    clip_floor: float = DEFAULT_FLOOR
    updates_per_step: int = 1
    total_steps: int | None = None

    def __post_init__(self) -> None:
        get_schedule(self.clip_schedule)  # unknown name -> KeyError listing the valid ones
        if self.updates_per_step < 1:
            raise ValueError(f"updates_per_step must be >= 1, got {self.updates_per_step}")
        if self.clip_floor < 0:
            raise ValueError(f"clip_floor must be >= 0, got {self.clip_floor}")


class _Clock:
    """Process-local step source (each actor worker process has its own)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.explicit: tuple[int, int | None] | None = None
        self.optimizer_updates = 0
        self.hook = None
        self.warned = False

    def on_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        n = _optimizer_step_count(optimizer)
        with self.lock:
            self.optimizer_updates = self.optimizer_updates + 1 if n is None else n

    def ensure_hook(self) -> None:
        if self.hook is None:
            self.hook = register_optimizer_step_post_hook(self.on_optimizer_step)


_CLOCK = _Clock()


def _optimizer_step_count(optimizer: torch.optim.Optimizer) -> int | None:
    """The optimizer's own update count (Adam/AdamW keep ``state[p]["step"]``), or None."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            step = optimizer.state.get(p, {}).get("step")
            if step is not None:
                return int(step.item() if isinstance(step, torch.Tensor) else step)
    return None


def updates_per_step(trainer_config: Any) -> int:
    """Actor optimizer updates per training step for a full verl trainer config (the one formula).

    verl 0.9.1 (``RayPPOTrainer._update_actor`` -> ``engine_workers.train_mini_batch`` ->
    ``tensordict_utils.make_iterator``) cuts each step's batch (``train_batch_size`` prompts x
    ``rollout.n``) into mini-batches of ``ppo_mini_batch_size`` prompts x ``rollout.n`` (per data-parallel
    rank: both divided by the ranks) and runs ``ppo_epochs`` passes, one update per mini-batch; it
    asserts that the mini-batch divides the batch. So ``ppo_epochs * train_batch_size //
    ppo_mini_batch_size`` (paper: 1 * 512 // 256 = 2), and a batch that is not a multiple of the
    mini-batch is refused here, before any worker starts, rather than at verl's first update.

    Raises:
        ValueError: ``train_batch_size`` is not a positive multiple of ``ppo_mini_batch_size``.
    """
    actor = trainer_config.actor_rollout_ref.actor
    batch, mini, epochs = (int(trainer_config.data.train_batch_size), int(actor.ppo_mini_batch_size),
                           int(actor.ppo_epochs))
    if mini < 1 or batch < mini or batch % mini:
        raise ValueError(f"data.train_batch_size={batch} is not a multiple of actor.ppo_mini_batch_size={mini}: "
                         "verl 0.9.1 splits each step's batch into whole mini-batches (make_iterator asserts it)")
    return epochs * (batch // mini)


def set_clip_step(step: int | None, total_steps: int | None = None) -> None:
    """Pin the step (0-based) and optionally ``S`` used by this process; ``None`` un-pins it."""
    with _CLOCK.lock:
        _CLOCK.explicit = None if step is None else (int(step), total_steps)


def reset_clip_clock() -> None:
    """Forget the explicit step and the optimizer update count (tests)."""
    with _CLOCK.lock:
        _CLOCK.explicit = None
        _CLOCK.optimizer_updates = 0
        _CLOCK.warned = False


def current_step(config: Any) -> tuple[int, int]:
    """``(s, S)`` for this process (see the module docstring).

    Raises:
        ValueError: if ``S`` is unknown (no explicit total, no ``policy_loss.total_steps`` and
            ``optim.total_training_steps`` unset).
    """
    pl = config.policy_loss
    updates_per_step = int(pl.get("updates_per_step", 1) or 1)
    with _CLOCK.lock:
        explicit = _CLOCK.explicit
        updates = _CLOCK.optimizer_updates
    if explicit is None and not _CLOCK.warned:
        _CLOCK.warned = True
        log.warning(UNPINNED_WARNING)
    step, total = (explicit[0], explicit[1]) if explicit is not None else (updates // updates_per_step, None)
    if total is None:
        total = pl.get("total_steps")
    if total is None:
        optim = config.get("optim")
        total = optim.get("total_training_steps") if optim is not None else None
    if total is None or int(total) < 1:
        raise ValueError(
            f"{LOSS_NAME}: total training steps unknown (got {total}); verl sets "
            "actor.optim.total_training_steps, or set actor.policy_loss.total_steps"
        )
    return step, int(total)


class _ScheduledClipConfig:
    """A view of the actor config whose clip ratios are the scheduled bounds (verl's config is frozen)."""

    def __init__(self, base: Any, low: float, high: float) -> None:
        self._base = base
        self.clip_ratio = high
        self.clip_ratio_low = low
        self.clip_ratio_high = high

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key.startswith("clip_ratio") and key != "clip_ratio_c" else self._base.get(
            key, default
        )


def scheduled_bounds(config: Any) -> tuple[float, float, int]:
    """``(low, high, s)``: the clip bounds for this process's current step."""
    _CLOCK.ensure_hook()
    pl = config.policy_loss
    name = pl.get("clip_schedule", "linear") or "linear"
    floor = float(pl.get("clip_floor", DEFAULT_FLOOR))
    step, total = current_step(config)
    eps = float(config.clip_ratio)
    eps_low = float(config.clip_ratio_low) if config.get("clip_ratio_low") is not None else eps
    eps_high = float(config.clip_ratio_high) if config.get("clip_ratio_high") is not None else eps
    low = clip_bound(name, eps_low, step, total, min(floor, eps_low))
    high = clip_bound(name, eps_high, step, total, min(floor, eps_high))
    return low, high, step


def compute_policy_loss_dynamic_clip(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Clipped PPO/GRPO loss with the scheduled bound (verl's policy-loss signature).

    Args:
        old_log_prob: ``[B, L]`` log-probs under the rollout (old) policy.
        log_prob: ``[B, L]`` log-probs under the current policy.
        advantages: ``[B, L]`` advantages (GRPO: the sequence advantage on every token).
        response_mask: ``[B, L]`` 1 for response tokens that count.
        loss_agg_mode: verl's aggregation mode ("token-mean", ...).
        config: verl's ``ActorConfig`` (``clip_ratio*``, ``policy_loss``, ``optim``).
        rollout_is_weights: ``[B, L]`` optional rollout-correction weights.

    Returns:
        ``(loss, metrics)``; metrics add ``guard/clip_bound``, ``guard/clip_bound_low``, ``guard/clip_step``.
    """
    if config is None:
        raise ValueError(f"{LOSS_NAME} needs the actor config")
    low, high, step = scheduled_bounds(config)
    loss, metrics = compute_policy_loss_vanilla(
        old_log_prob=old_log_prob,
        log_prob=log_prob,
        advantages=advantages,
        response_mask=response_mask,
        loss_agg_mode=loss_agg_mode,
        config=_ScheduledClipConfig(config, low, high),
        rollout_is_weights=rollout_is_weights,
    )
    metrics = {**metrics, "guard/clip_bound": high, "guard/clip_bound_low": low, "guard/clip_step": float(step)}
    return loss, metrics


def _register() -> None:
    existing = POLICY_LOSS_REGISTRY.get(LOSS_NAME)
    if existing is not None and existing.__module__ != __name__:
        raise ValueError(f"policy loss {LOSS_NAME!r} is already registered by {existing.__module__}")
    register_policy_loss(LOSS_NAME)(compute_policy_loss_dynamic_clip)


_register()
