"""Clip-range schedules for dynamic clipping (pure: no torch, no verl).

GuardReasoner-VL shrinks the PPO/GRPO clip bound as training goes on: at step
``s`` of ``S`` total steps the bound is ``eps * (S - s) / S`` (wide early =
explore, narrow late = exploit). A schedule here is a function

    bound = schedule(eps, step, total_steps, floor)

with ``step`` counted from 0 (the first update uses ``step = 0``) and
``progress = clamp(step / total_steps, 0, 1)``:

* ``linear``   (the paper):  ``max(floor, eps * (1 - progress))``
* ``constant`` (ablation):   ``max(floor, eps)``
* ``cosine``:                ``max(floor, eps * 0.5 * (1 + cos(pi * progress)))``

The floor keeps the range from reaching 0 (a zero bound freezes the policy):
every schedule returns ``max(floor, ...)``. ``DEFAULT_FLOOR`` is 0.01; with
``eps = 0.2`` the linear schedule meets it only in the last 5 % of training.

Schedules live in a small registry: :func:`register_schedule` (a decorator;
a duplicate name raises) and :func:`get_schedule` (an unknown name raises and
lists the valid ones).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from guardrl.core.registry import Registry

ScheduleFn = Callable[[float, int, int, float], float]

DEFAULT_FLOOR = 0.01

_SCHEDULES: Registry[ScheduleFn] = Registry("clip schedule")


def register_schedule(name: str) -> Callable[[ScheduleFn], ScheduleFn]:
    """Register a clip schedule ``fn(eps, step, total_steps, floor) -> bound`` under ``name``.

    Raises:
        ValueError: if ``name`` is already registered.
    """
    return _SCHEDULES.register(name)


def get_schedule(name: str) -> ScheduleFn:
    """The schedule registered under ``name``.

    Raises:
        KeyError: for an unknown name; the message lists the valid names.
    """
    return _SCHEDULES.get(name)


def schedule_names() -> list[str]:
    return _SCHEDULES.names()


def progress(step: int, total_steps: int) -> float:
    """``clamp(step / total_steps, 0, 1)``.

    Raises:
        ValueError: if ``total_steps < 1``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return min(1.0, max(0.0, step / total_steps))


def _check(eps: float, floor: float) -> None:
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if not 0 <= floor <= eps:
        raise ValueError(f"floor must be in [0, eps={eps}], got {floor}")


@register_schedule("linear")
def linear(eps: float, step: int, total_steps: int, floor: float = DEFAULT_FLOOR) -> float:
    """The paper's schedule: ``max(floor, eps * (S - s) / S)`` (s clamped to [0, S])."""
    _check(eps, floor)
    return max(floor, eps * (1.0 - progress(step, total_steps)))


@register_schedule("constant")
def constant(eps: float, step: int, total_steps: int, floor: float = DEFAULT_FLOOR) -> float:
    """Ablation: the bound stays ``eps`` (``max(floor, eps)``)."""
    _check(eps, floor)
    progress(step, total_steps)  # validate total_steps like the others
    return max(floor, eps)


@register_schedule("cosine")
def cosine(eps: float, step: int, total_steps: int, floor: float = DEFAULT_FLOOR) -> float:
    """``max(floor, eps * (1 + cos(pi * s / S)) / 2)``: flat early, fast in the middle, flat late."""
    _check(eps, floor)
    return max(floor, eps * 0.5 * (1.0 + math.cos(math.pi * progress(step, total_steps))))


def clip_bound(
    name: str, eps: float, step: int, total_steps: int, floor: float = DEFAULT_FLOOR
) -> float:
    """The bound of schedule ``name`` at ``step`` (see the module docstring)."""
    return get_schedule(name)(eps, step, total_steps, floor)
