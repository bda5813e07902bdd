"""Learning-rate schedule of R-SFT: linear warm-up, then cosine decay. Pure (no torch).

For optimizer step ``s`` (0-based) of ``total`` steps with ``warmup`` warm-up steps::

    s <  warmup:  factor = (s + 1) / warmup
    s >= warmup:  p = (s - warmup) / max(1, total - warmup)              # in [0, 1)
                  factor = min_ratio + (1 - min_ratio) * 0.5 * (1 + cos(pi * p))

and the learning rate of step ``s`` is ``lr * factor``. Warm-up starts above 0 so the first step
trains; the last step's factor is just above ``min_ratio``.
"""

from __future__ import annotations

import math


def warmup_steps(total: int, ratio: float) -> int:
    """Warm-up steps for a run of ``total`` steps: ``ceil(ratio * total)``, at most ``total - 1``."""
    if total < 1:
        raise ValueError(f"total steps must be >= 1, got {total}")
    return min(math.ceil(ratio * total), total - 1) if ratio > 0 else 0


def lr_factor(step: int, *, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (see the module docstring)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
