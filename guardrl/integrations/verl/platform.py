"""A CPU platform for verl 0.9.1, through verl's public registries only.

Importing this module (verl imports it in every Ray worker when it is named in
``VERL_USE_EXTERNAL_MODULES``) does three things, each idempotent:

1. registers :class:`PlatformCPU` with ``verl.plugin.platform.PlatformRegistry``
   under the name ``"cpu"`` (selected with ``VERL_PLATFORM=cpu``): device
   ``"cpu"``, collective backend ``"gloo"``, ``current_device()`` returning
   ``"cpu"`` so ``model.to(get_device_id())`` stays on the CPU. Ray still
   schedules verl's workers on a *logical* ``GPU`` resource, which
   :func:`guardrl.integrations.verl.entry.start_ray` declares on a local head;
2. registers verl's own FSDP engines (``FSDPEngineWithLMHead``,
   ``FSDPEngineWithValueHead``) for ``device="cpu"`` with ``EngineRegistry``;
3. in a verl Ray worker process (``WG_BACKEND=ray`` and ``RANK`` set), starts a
   plain ``gloo`` process group before verl's
   ``initialize_global_process_group_ray`` runs. verl builds the backend string
   ``f"cpu:gloo,{device}:{backend}"`` (verl/utils/distributed.py:89), which is
   ``"cpu:gloo,cpu:gloo"`` on a CPU and which torch rejects as a duplicate
   device type; verl skips its own initialisation when a group exists
   (verl/utils/distributed.py:90);
4. in a process that has imported vLLM's CPU build (the rollout's vLLM worker imports verl's worker
   extension, hence this module), keeps each linear layer's weight after vLLM packs it for oneDNN: vLLM
   frees it (``vllm/model_executor/layers/linear.py:215`` calls ``dispatch_cpu_unquantized_gemm(layer,
   remove_weight=True)``, which sets ``layer.weight = Parameter(torch.empty(0))``), so verl's weight sync
   (``verl/workers/rollout/vllm_rollout/utils.py`` ``_update_weights`` -> ``model.load_weights``) fails with
   ``Attempted to load weight (torch.Size([192, 64])) into parameter (torch.Size([0]))`` (the first synced
   tensor, the tiny model's ``visual.blocks.0.attn.qkv.weight``). With the weight kept, verl's own call to
   ``process_weights_after_loading`` after each sync repacks the new weights.

Nothing here runs unless ``VERL_PLATFORM=cpu``; on a GPU machine the module is
inert, so recipes may name it unconditionally.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import timedelta
from types import ModuleType
from typing import Any

import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry

log = logging.getLogger(__name__)

PLATFORM_NAME = "cpu"


class _CPUDeviceModule(ModuleType):
    """The bits of a ``torch.<device>`` module verl calls, for the CPU (all no-ops)."""

    def __init__(self) -> None:
        super().__init__("guardrl_cpu_device")

    def __getattr__(self, name: str) -> Any:
        def noop(*args: Any, **kwargs: Any) -> Any:
            if name in ("memory_allocated", "memory_reserved", "max_memory_allocated", "max_memory_reserved"):
                return 0
            if name == "mem_get_info":
                return (0, 0)
            if name == "is_available":
                return True
            if name == "device_count":
                return 1
            if name == "current_device":
                return "cpu"
            if name == "get_device_name":
                return "CPU"
            return None

        if name.startswith("__"):
            raise AttributeError(name)
        return noop

    def get_rng_state(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.get_rng_state()

    def set_rng_state(self, state: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        torch.set_rng_state(state)

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    manual_seed_all = manual_seed


@PlatformRegistry.register(platform=PLATFORM_NAME)
class PlatformCPU(PlatformBase):
    """verl on the host CPU: device ``cpu``, collectives over ``gloo``."""

    _module = _CPUDeviceModule()

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return self._module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never auto-detected: only chosen explicitly with VERL_PLATFORM=cpu.
        return False

    def current_device(self) -> str:  # type: ignore[override]
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return (None, None)

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        # verl's resource pools and _check_resource_available count "GPU" (or "NPU");
        # the local head declares logical GPUs, one per CPU worker.
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None


def _register_engines() -> None:
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

    for model_type, cls in (("language_model", FSDPEngineWithLMHead), ("value_model", FSDPEngineWithValueHead)):
        known = EngineRegistry._engines.get(model_type, {})
        backends = [b for b in ("fsdp", "fsdp2") if PLATFORM_NAME not in known.get(b, {})]
        if backends:
            EngineRegistry.register(model_type=model_type, backend=backends, device=PLATFORM_NAME)(cls)


def _init_gloo_process_group() -> None:
    """Start the worker's process group with plain gloo (see module docstring, point 3)."""
    if os.environ.get("WG_BACKEND") != "ray" or "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        return
    dist.init_process_group(
        backend="gloo",
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        timeout=timedelta(seconds=int(os.environ.get("GUARDRL_GLOO_TIMEOUT_S", "1800"))),
    )
    log.info("gloo process group: rank %s of %s", os.environ["RANK"], os.environ.get("WORLD_SIZE", "1"))


def _keep_vllm_cpu_linear_weights() -> None:
    """Point 4 of the module docstring (only where vLLM is already imported and runs on its CPU platform)."""
    import sys

    if "vllm" not in sys.modules:
        return
    import vllm.model_executor.layers.utils as vllm_utils
    from vllm.platforms import current_platform

    orig = vllm_utils.dispatch_cpu_unquantized_gemm
    if not current_platform.is_cpu() or getattr(orig, "guardrl_keeps_weight", False):
        return

    def dispatch_keeping_weight(layer: torch.nn.Module, remove_weight: bool) -> None:
        orig(layer, remove_weight=False)

    dispatch_keeping_weight.guardrl_keeps_weight = True  # type: ignore[attr-defined]
    vllm_utils.dispatch_cpu_unquantized_gemm = dispatch_keeping_weight  # linear.py imports it at call time
    log.info("vLLM CPU: linear weights kept after oneDNN packing (verl weight sync reloads them)")


def is_active() -> bool:
    """True when verl is told to run on the CPU platform (``VERL_PLATFORM=cpu``)."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME


if is_active():
    _register_engines()
    _init_gloo_process_group()
    _keep_vllm_cpu_linear_weights()
