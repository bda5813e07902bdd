"""The one place that starts or attaches Ray, for every stage (reject, augment, eval, SFT, RL, pipeline).

:func:`init_ray`, in order:

1. Ray already initialised in this process (a pipeline stage running as a Ray task, a test that
   started Ray, a caller that keeps its cluster): reuse it, start nothing, return ``False``;
2. ``RAY_ADDRESS`` set (``ray job submit``, a cluster head): attach to that cluster; the local-head
   settings (CPUs, logical GPUs, temp dir) are the cluster's business and are not passed;
3. otherwise a new local head (``address="local"``: never another user's cluster found through
   ``/tmp/ray/ray_current_cluster``), with ``num_cpus`` CPUs, ``num_gpus`` logical GPUs (verl's
   resource pools count ``GPU`` even on its CPU platform), no dashboard, and with
   ``fresh_temp_dir`` its own temp dir (``$GUARDRL_RAY_TMP`` or ``/tmp``, prefix ``guardrl-ray-``).

It returns ``True`` when this call connected or started Ray, so the caller shuts it down when done
(``if started: ray.shutdown()``). Ray's driver logging is quiet (``logging.WARNING``) unless asked.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Mapping
from typing import Any

RAY_TMP_ENV = "GUARDRL_RAY_TMP"


def local_head_kwargs(num_cpus: float | None = None, num_gpus: float | None = None,
                      fresh_temp_dir: bool = False) -> dict[str, Any]:
    """``ray.init`` keyword arguments of a new local head (case 3 of the module docstring)."""
    kwargs: dict[str, Any] = {"address": "local", "include_dashboard": False}
    if num_cpus is not None:
        kwargs["num_cpus"] = max(1, math.ceil(num_cpus))  # Ray wants a whole number of CPUs
    if num_gpus:
        kwargs["num_gpus"] = num_gpus
    if fresh_temp_dir:
        kwargs["_temp_dir"] = tempfile.mkdtemp(prefix="guardrl-ray-", dir=os.environ.get(RAY_TMP_ENV, "/tmp"))
    return kwargs


def init_ray(
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    fresh_temp_dir: bool = False,
    log_to_driver: bool = True,
    logging_level: int = logging.WARNING,
) -> bool:
    """Reuse, attach to or start Ray (see the module docstring); True when this call did connect.

    Args:
        num_cpus: CPUs of a new local head (rounded up; ``None`` = Ray's count of this machine's cores).
        num_gpus: logical GPUs of a new local head (``None``/0 = Ray's own detection).
        runtime_env: Ray runtime environment (env vars, ...) for every worker; passed when attaching too.
        fresh_temp_dir: give a new local head its own temp dir (sessions of parallel runs never mix).
        log_to_driver: print the workers' output in this process.
        logging_level: level of Ray's own driver logger.
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": log_to_driver, "logging_level": logging_level}
    if runtime_env:
        kwargs["runtime_env"] = dict(runtime_env)
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(**local_head_kwargs(num_cpus, num_gpus, fresh_temp_dir), **kwargs)
    return True
