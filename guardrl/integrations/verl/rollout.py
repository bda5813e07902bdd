"""A verl rollout backed by Hugging Face ``generate``: ``actor_rollout_ref.rollout.name=hf``.

verl 0.9.1 generates through *async rollout servers* (vLLM, SGLang, TensorRT-LLM):
the agent loop sends token-in/token-out requests to a server actor, and the
training worker pushes new weights to that server after each update. This
module provides the same three pieces for Hugging Face ``generate`` (CPU or a
single GPU without vLLM), registered through verl's registries:

* :class:`HFRolloutServer` — a Ray actor holding an HF model; ``generate``
  requests arriving concurrently are gathered into one padded batch per
  sampling setting, so a GRPO group of ``n`` samples is one ``generate`` call;
* :class:`HFReplica` — a ``RolloutReplica`` (``RolloutReplicaRegistry``, name
  ``hf``) that starts one server per replica;
* :class:`HFServerAdapter` — a ``BaseRollout`` (verl's ``_ROLLOUT_REGISTRY``,
  key ``("hf", "async")``) living in the training worker; ``update_weights``
  gathers the actor's full tensors and loads them into the server's model.

Sleep / wake-up / KV-cache calls are no-ops: an HF model keeps its weights and
allocates its cache per call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from verl.workers.rollout import base as rollout_base
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutMode, RolloutReplica, RolloutReplicaRegistry, TokenOutput

log = logging.getLogger(__name__)

ROLLOUT_NAME = "hf"
SERVER_PREFIX = "guardrl_hf_server"
_VISION_TOKEN_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id", "vision_token_id")


def server_name(replica_rank: int, node_rank: int = 0, suffix: str = "") -> str:
    """The Ray actor name of a replica's server (the adapter finds it by name)."""
    return f"{SERVER_PREFIX}_{replica_rank}_{node_rank}{suffix}"


@dataclass
class _Request:
    prompt_ids: list[int]
    images: list[Any] | None
    max_tokens: int
    want_logprobs: bool
    future: asyncio.Future = field(repr=False)


def _load_model(path: str, dtype: torch.dtype):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    cfg = AutoConfig.from_pretrained(path)
    auto = AutoModelForImageTextToText if hasattr(cfg, "vision_config") else AutoModelForCausalLM
    return auto.from_pretrained(path, dtype=dtype, attn_implementation="sdpa").eval()


class HFRolloutServer:
    """Token-in/token-out generation with an HF model (one per rollout replica).

    Args:
        config: verl's ``RolloutConfig`` (``prompt_length``, ``response_length``,
            ``max_num_seqs``, ``seed``, ``dtype``).
        model_config: verl's ``HFModelConfig`` (``local_path`` or ``path``).
        replica_rank: this replica's index (seeds differ per replica).
    """

    def __init__(self, config, model_config, replica_rank: int = 0, max_batch: int | None = None) -> None:
        from transformers import AutoProcessor

        self.config = config
        self.replica_rank = replica_rank
        path = getattr(model_config, "local_path", None) or model_config.path
        self.device = "cuda" if torch.cuda.is_available() and os.environ.get("VERL_PLATFORM") != "cpu" else "cpu"
        dtype = torch.float32 if self.device == "cpu" else torch.bfloat16
        self.model = _load_model(path, dtype).to(self.device)
        try:
            self.processor = AutoProcessor.from_pretrained(path)
        except Exception:  # text-only model: no processor
            self.processor = None
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else []
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        tok = getattr(self.processor, "tokenizer", None)
        self.pad_id = gen.pad_token_id if gen.pad_token_id is not None else (tok.pad_token_id if tok else 0)
        self.image_token_id = getattr(self.model.config, "image_token_id", None)
        # a completion never carries vision placeholders (verl's mrope position ids would need a grid
        # for them); an untrained model samples them, so they are suppressed
        self.suppress = sorted(
            {getattr(self.model.config, k, None) for k in _VISION_TOKEN_KEYS} - {None}
        ) or None
        self.max_batch = max_batch or min(int(config.max_num_seqs), 256)
        self.global_steps: int | None = None
        self._queue: list[tuple[tuple, _Request]] = []
        self._wakeup: asyncio.Event | None = None
        self._loop_task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        torch.manual_seed(int(config.seed) + replica_rank)
        self.stats = {"batches": 0, "sequences": 0, "seconds": 0.0}

    # -- verl's server interface -------------------------------------------------------------
    def get_server_address(self) -> tuple[str, int]:
        return ray.util.get_node_ip_address(), 0

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        audio_data: list[Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        priority: int = 0,
        **kwargs: Any,
    ) -> TokenOutput:
        """Generate one completion; concurrent calls are batched (see class docstring)."""
        if video_data or audio_data:
            raise NotImplementedError("the hf rollout handles text and images only")
        params = dict(sampling_params)
        max_tokens = params.pop("max_tokens", params.pop("max_new_tokens", None))
        budget = self.config.prompt_length + self.config.response_length - len(prompt_ids)
        max_tokens = max(1, min(max_tokens or self.config.response_length, self.config.response_length, budget))
        want_logprobs = bool(params.pop("logprobs", False))
        key = (
            float(params.get("temperature", 1.0)),
            float(params.get("top_p", 1.0)),
            int(params.get("top_k", -1) if params.get("top_k") is not None else -1),
            float(params.get("repetition_penalty", 1.0) or 1.0),
            bool(params.get("do_sample", True)),
        )
        fut = asyncio.get_running_loop().create_future()
        self._ensure_loop()
        self._queue.append((key, _Request(list(map(int, prompt_ids)), image_data, max_tokens, want_logprobs, fut)))
        self._wakeup.set()
        token_ids, logprobs = await fut
        stop = "completed" if token_ids and token_ids[-1] in self.eos_ids else None
        return TokenOutput(
            token_ids=token_ids,
            log_probs=logprobs,
            stop_reason=stop,
            num_preempted=0,
            extra_fields={"global_steps": self.global_steps},
        )

    async def load_weights(self, state: dict[str, torch.Tensor], global_steps: int | None = None) -> int:
        """Copy the actor's full tensors (HF names) into the rollout model; returns how many loaded."""
        async with self._lock:
            own = self.model.state_dict()
            loaded = 0
            with torch.no_grad():
                for name, tensor in state.items():
                    target = own.get(name)
                    if target is None:
                        target = own.get(name.removeprefix("model.")) if name.startswith("model.") else None
                    if target is None or target.shape != tensor.shape:
                        continue
                    target.copy_(tensor.to(target.device, target.dtype))
                    loaded += 1
            missing = len(own) - loaded
            if loaded == 0 or missing > len(own) // 2:
                raise RuntimeError(
                    f"hf rollout: only {loaded}/{len(own)} tensors matched the actor's names "
                    f"(first actor names: {list(state)[:3]}, first rollout names: {list(own)[:3]})"
                )
            if global_steps is not None:
                self.global_steps = global_steps
            return loaded

    async def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps

    async def get_stats(self) -> dict[str, float]:
        return dict(self.stats)

    # no-ops: an HF model keeps its weights and allocates its cache per call
    async def wake_up(self, *args: Any, **kwargs: Any) -> None: ...
    async def sleep(self, *args: Any, **kwargs: Any) -> None: ...
    async def clear_kv_cache(self) -> None: ...
    async def release_kv_cache(self) -> None: ...
    async def resume_kv_cache(self) -> None: ...
    async def wait_for_requests_to_drain(self) -> None:
        while self._queue:
            await asyncio.sleep(0.01)

    async def abort_all_requests(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"aborted_count": 0, "request_ids": []}

    async def resume_generation(self) -> None: ...
    async def abort_request(self, request_id: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"aborted": False, "request_id": request_id}

    async def start_profile(self, **kwargs: Any) -> None: ...
    async def stop_profile(self) -> None: ...

    # -- batching ---------------------------------------------------------------------------
    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._wakeup = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._batch_loop())

    async def _batch_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            # let the rest of a group (the n samples of a prompt, the other prompts) arrive
            await asyncio.sleep(0.05)
            self._wakeup.clear()
            while self._queue:
                key = self._queue[0][0]
                batch = [r for k, r in self._queue if k == key][: self.max_batch]
                taken = {id(r) for r in batch}
                self._queue = [(k, r) for k, r in self._queue if id(r) not in taken]
                try:
                    async with self._lock:
                        results = await asyncio.to_thread(self._generate_batch, key, batch)
                    for req, res in zip(batch, results, strict=True):
                        if not req.future.done():
                            req.future.set_result(res)
                except Exception as exc:  # surface the error in every waiting request
                    log.exception("hf rollout: batch generation failed")
                    for req in batch:
                        if not req.future.done():
                            req.future.set_exception(exc)

    def _vision_inputs(self, batch: list[_Request]) -> dict[str, torch.Tensor]:
        images = [img for r in batch for img in (r.images or [])]
        if not images:
            return {}
        out = self.processor.image_processor(images=images, return_tensors="pt")
        return {"pixel_values": out["pixel_values"].to(self.device, self.model.dtype),
                "image_grid_thw": out["image_grid_thw"].to(self.device)}

    def _expand_image_tokens(self, batch: list[_Request], grid: torch.Tensor | None) -> None:
        """Prompt ids carry one image token per patch group; expand if a caller deduplicated them."""
        if grid is None or self.image_token_id is None:
            return
        merge = getattr(self.processor.image_processor, "merge_size", 2) ** 2
        counts = (grid.prod(-1) // merge).tolist()
        i = 0
        for req in batch:
            n_img = len(req.images or [])
            want = counts[i : i + n_img]
            i += n_img
            have = sum(1 for t in req.prompt_ids if t == self.image_token_id)
            if have == sum(want) or have != n_img:
                continue
            ids, k = [], 0
            for t in req.prompt_ids:
                if t == self.image_token_id:
                    ids.extend([t] * int(want[k]))
                    k += 1
                else:
                    ids.append(t)
            req.prompt_ids = ids

    @torch.no_grad()
    def _generate_batch(self, key: tuple, batch: list[_Request]) -> list[tuple[list[int], list[float] | None]]:
        t0 = time.perf_counter()
        temperature, top_p, top_k, repetition_penalty, do_sample = key
        vision = self._vision_inputs(batch)
        self._expand_image_tokens(batch, vision.get("image_grid_thw"))
        width = max(len(r.prompt_ids) for r in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, req in enumerate(batch):  # left padding
            ids[row, width - len(req.prompt_ids) :] = torch.tensor(req.prompt_ids)
            mask[row, width - len(req.prompt_ids) :] = 1
        greedy = temperature <= 0 or not do_sample
        want_logprobs = any(r.want_logprobs for r in batch)
        out = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            **vision,
            max_new_tokens=max(r.max_tokens for r in batch),
            do_sample=not greedy,
            temperature=None if greedy else temperature,
            top_p=None if greedy else top_p,
            top_k=None if greedy or top_k <= 0 else top_k,
            repetition_penalty=repetition_penalty,
            eos_token_id=sorted(self.eos_ids),
            suppress_tokens=self.suppress,
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
            output_logits=want_logprobs,
        )
        new = out.sequences[:, width:].cpu()
        logp = None
        if want_logprobs:  # the actor's formula: log_softmax(raw logits / temperature) at the sampled token
            scale = 1.0 if greedy else temperature
            picked = new.to(out.logits[0].device)
            logp = torch.stack([torch.log_softmax(step.float() / scale, -1).gather(-1, picked[:, t, None])[:, 0]
                                for t, step in enumerate(out.logits)], dim=1).cpu()  # [B, T], no [B, T, V] copy
        results = []
        for row, req in enumerate(batch):
            tokens = new[row].tolist()[: req.max_tokens]
            cut = next((i + 1 for i, t in enumerate(tokens) if t in self.eos_ids), len(tokens))
            tokens = tokens[:cut]
            lp = logp[row, :cut].tolist() if (logp is not None and req.want_logprobs) else None
            results.append((tokens, lp))
        self.stats["batches"] += 1
        self.stats["sequences"] += len(batch)
        self.stats["seconds"] += time.perf_counter() - t0
        return results


class HFReplica(RolloutReplica):
    """One HF rollout server per replica (``rollout.tensor_model_parallel_size`` must be 1)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.world_size != 1:
            raise ValueError(
                "the hf rollout runs one process per replica: set actor_rollout_ref.rollout."
                "tensor_model_parallel_size=1 (and data/pipeline parallel size 1)"
            )
        self.server_class = ray.remote(HFRolloutServer)

    def rollout_worker_use_gpu(self) -> bool:
        return False

    async def launch_servers(self) -> None:
        options: dict[str, Any] = {
            "name": server_name(self.replica_rank, 0, self.name_suffix),
            "max_concurrency": self.max_concurrency,
            "num_cpus": 0,
        }
        if self.workers:  # hybrid: next to the training worker that pushes the weights
            node_id = await self.workers[0].__ray_call__.remote(lambda w: ray.get_runtime_context().get_node_id())
            options["scheduling_strategy"] = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                node_id=node_id, soft=False
            )
        env = {k: v for k, v in os.environ.items() if k.startswith(("VERL_", "GUARDRL_", "HF_", "OMP_"))}
        options["runtime_env"] = {"env_vars": env}
        server = self.server_class.options(**options).remote(
            config=self.config, model_config=self.model_config, replica_rank=self.replica_rank
        )
        self.servers = [server]
        address, port = await server.get_server_address.remote()
        self._server_handle = server
        self._server_address = f"{address}:{port}"
        log.info("hf rollout replica %d ready (%s mode)", self.replica_rank, self.rollout_mode)

    async def sleep(self) -> None:
        await asyncio.gather(*[s.sleep.remote() for s in self.servers])


class HFServerAdapter(BaseRollout):
    """Lives in each training worker; pushes the actor's weights to its replica's server.

    Every rank iterates the weight generator (FSDP gathers full tensors
    collectively); rank 0 of each replica sends them.
    """

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1, *args: Any, **kwargs: Any):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", "0"))
        self.replica_rank = rank if replica_rank == -1 else replica_rank  # one process per replica
        self._server = None
        self._is_leader = True

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    async def update_weights(
        self, weights: Generator[tuple[str, torch.Tensor], None, None], wire_format: str = "named_tensors", **kwargs
    ) -> None:
        if wire_format != "named_tensors":
            raise NotImplementedError(f"hf rollout: weight wire format {wire_format!r} (use checkpoint_engine=naive)")
        state = {}
        for name, tensor in weights:
            t = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            state[name] = t.detach().to("cpu", copy=True)
        if self._is_leader:
            await self._server_handle().load_weights.remote(state, kwargs.get("global_steps"))


def register() -> None:
    """Make ``rollout.name=hf`` known to verl (idempotent)."""
    rollout_base._ROLLOUT_REGISTRY.setdefault((ROLLOUT_NAME, "async"), f"{__name__}.HFServerAdapter")
    if ROLLOUT_NAME not in RolloutReplicaRegistry._registry:
        RolloutReplicaRegistry.register(ROLLOUT_NAME, lambda: HFReplica)


register()

__all__ = ["HFReplica", "HFRolloutServer", "HFServerAdapter", "RolloutMode", "register", "server_name"]
