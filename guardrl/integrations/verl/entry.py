"""Online GRPO through verl: a guardrl recipe -> verl's PPO trainer config -> verl's trainer on Ray.

A recipe (``recipes/*/rl.yaml``) has a few guardrl fields (model, data, output
folder, reward, clipping, device) and a ``verl:`` mapping laid out exactly like
verl's own ``ppo_trainer.yaml``. :func:`compose_config` composes verl's
``ppo_trainer.yaml`` with Hydra, maps the guardrl fields onto it, then merges
the recipe's ``verl:`` mapping on top, so every verl field stays overridable
(``make rl RECIPE=... ARGS="verl.trainer.total_training_steps=5"``).

guardrl's modules reach every Ray worker through ``VERL_USE_EXTERNAL_MODULES``
(passed in the Ray runtime environment): the CPU platform
(:mod:`guardrl.integrations.verl.platform`, only active with ``device: cpu``), the HF
``generate`` rollout (:mod:`guardrl.integrations.verl.rollout`, ``rollout.name=hf``) and
the reward / policy-loss plugins named by the recipe.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from guardrl.core.recipe import RecipeError, load_recipe
from guardrl.integrations.verl.recipe_config import RLRecipe, parse_rl_recipe, reward_fields
from guardrl.tasks import get_task

log = logging.getLogger(__name__)

PLATFORM_MODULE = "guardrl.integrations.verl.platform"
COMPAT_MODULE = "guardrl.integrations.verl.compat"
ROLLOUT_MODULE = "guardrl.integrations.verl.rollout"
POLICY_LOSS_MODULE = "guardrl.integrations.verl.policy_loss"
POLICY_LOSS_NAME = "guardrl_dynamic_clip"
POLICY_LOSS_CONFIG = "guardrl.integrations.verl.policy_loss.DynamicClipPolicyLossConfig"
REWARD_FN_PATH = "pkg://guardrl.integrations.verl.reward"
REWARD_FN_NAME = "compute_score"
VERL_CONFIG_NAME = "ppo_trainer"
DATASET_PATH = "pkg://guardrl.integrations.verl.dataset"  # verl's data.custom_cls (that module imports verl)
DATASET_NAME = "TaskRLDataset"


def verl_config_dir() -> str:
    import verl.trainer.config as cfg_pkg

    return str(Path(cfg_pkg.__file__).parent)


def external_modules(recipe: DictConfig) -> list[str]:
    """The guardrl modules every verl process imports (order: platform first)."""
    mods = [PLATFORM_MODULE, COMPAT_MODULE, ROLLOUT_MODULE, POLICY_LOSS_MODULE]
    mods += [m for m in (recipe.get("plugins") or []) if m not in mods]
    return mods


CPU_ROLLOUTS = ("hf", "vllm")
# verl's vLLM server on vLLM's CPU build: no sleep mode (the CPU platform refuses it; verl's YAML has no key
# for it, engine_kwargs are spread last into the server's arguments), no torch.compile (minutes on a CPU), a
# fixed KV cache (a share of a shared host's free memory moves too much)
_VLLM_CPU_ROLLOUT = {"name": "vllm", "enforce_eager": True, "gpu_memory_utilization": 0.1,
                     "engine_kwargs": {"vllm": {"enable_sleep_mode": False, "kv_cache_memory_bytes": 512 * 2**20}}}


def _cpu_rollout(recipe: DictConfig) -> dict[str, Any]:
    name = str(recipe.get("rollout", "hf"))
    if name not in CPU_ROLLOUTS:
        raise RecipeError(f"{recipe.get('_recipe_path', '<recipe>')}: rollout {name!r}; valid: {list(CPU_ROLLOUTS)}")
    return dict(_VLLM_CPU_ROLLOUT) if name == "vllm" else {"name": "hf"}


def _cpu_defaults(recipe: DictConfig) -> dict[str, Any]:
    """verl settings that make its trainer run on the CPU platform (see ../shared/notes/verl-on-cpu.md)."""
    return {
        "trainer": {"device": "cpu", "n_gpus_per_node": int(recipe.get("n_workers", 1)), "nnodes": 1},
        "actor_rollout_ref": {
            "model": {"override_config": {"attn_implementation": "sdpa"}, "use_remove_padding": False},
            # fp32 compute (verl's default is bf16 mixed precision): a CPU without bf16 matrix units runs
            # bf16 matmuls slower than fp32, and the HF rollout samples in fp32 too
            "actor": {"strategy": "fsdp2",
                      "fsdp_config": {"param_offload": False, "optimizer_offload": False, "dtype": "float32"}},
            "ref": {"strategy": "fsdp2", "fsdp_config": {"dtype": "float32"}},
            "rollout": {
                **_cpu_rollout(recipe),
                "mode": "async",
                "tensor_model_parallel_size": 1,
                "data_parallel_size": 1,
                "pipeline_model_parallel_size": 1,
                "free_cache_engine": False,
                "dtype": "float32",
                "checkpoint_engine": {"backend": "naive"},
            },
        },
        "critic": {"strategy": "fsdp2"},
    }


def model_path(recipe: DictConfig) -> str:
    """The recipe's model (``model: PATH`` or ``model.path``, else ``model.fallback`` when path is missing)."""
    m = recipe.model
    if isinstance(m, str):
        return m
    path = str(m.path)
    if m.get("fallback") and not Path(path).exists() and not _looks_like_hub_id(path):
        log.warning("model %s not found; using the fallback %s", path, m.fallback)
        return str(m.fallback)
    return path


def _looks_like_hub_id(path: str) -> bool:
    return not path.startswith((".", "/", "outputs", "runs")) and path.count("/") == 1


def _guardrl_fields(recipe: DictConfig, rc: RLRecipe) -> dict[str, Any]:
    """Map the recipe's typed guardrl fields (model, data, output_dir, reward, clip) onto verl's keys."""
    out: dict[str, Any] = {"actor_rollout_ref": {"model": {"path": model_path(recipe)}}}
    # the rows hold data; verl's dataset renders each prompt with the recipe's task (verl_ext.dataset)
    out["data"] = {"custom_cls": {"path": DATASET_PATH, "name": DATASET_NAME},
                   "+task": rc.task, "+task_modules": list(rc.task_modules)}
    if rc.data.train:
        out["data"].update(train_files=str(rc.data.train), val_files=str(rc.data.val or rc.data.train))
    if rc.output_dir:
        out["trainer"] = {"default_local_dir": str(Path(rc.output_dir) / "checkpoints")}
    if rc.reward is not None:
        kwargs = {**{k: v for k, v in rc.reward.items() if v is not None}, "task": rc.task,
                  "task_modules": list(rc.task_modules)}
        task = get_task(rc.task, list(rc.task_modules))
        if "max_length" in (reward_fields(task) or {"max_length"}):  # a non-dataclass config: as before
            kwargs.setdefault("max_length", "${data.max_response_length}")
        module = getattr(task, "verl_reward_module", None)
        out["reward"] = {"custom_reward_function": {"path": f"pkg://{module}" if module else REWARD_FN_PATH,
                                                    "name": REWARD_FN_NAME, "reward_kwargs": kwargs}}
    if rc.clip is not None:
        eps = float(rc.clip.eps)
        out["actor_rollout_ref"]["actor"] = {
            "clip_ratio": eps,
            "clip_ratio_low": eps,
            "clip_ratio_high": eps,
            "policy_loss": {
                "_target_": POLICY_LOSS_CONFIG,
                "loss_mode": POLICY_LOSS_NAME,
                "clip_schedule": str(rc.clip.schedule),
                "clip_floor": float(rc.clip.floor),
            },
        }
    return out


def compose_config(recipe: DictConfig, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose verl's PPO trainer config for ``recipe``.

    Order (later wins): verl's ``ppo_trainer.yaml`` -> CPU defaults (``device: cpu``)
    -> the recipe's guardrl fields -> the recipe's ``verl:`` mapping -> ``overrides``
    (Hydra syntax on verl's keys, e.g. ``trainer.total_training_steps=2``).

    Raises:
        RecipeError: a missing field, or a verl key that does not exist.
    """
    from hydra import compose, initialize_config_dir

    rc = parse_rl_recipe(recipe)  # unknown keys / bad values -> RecipeError naming the recipe and the key
    with initialize_config_dir(config_dir=verl_config_dir(), version_base=None):
        cfg = compose(config_name=VERL_CONFIG_NAME)
    OmegaConf.set_struct(cfg, False)
    layers = []
    if str(recipe.get("device", "cuda")) == "cpu":
        layers.append(_cpu_defaults(recipe))
    layers.append(_guardrl_fields(recipe, rc))
    if recipe.get("verl") is not None:
        layers.append(OmegaConf.to_container(recipe.verl, resolve=False))
    for layer in layers:
        layer, added = _split_added(layer)
        _check_known_keys(cfg, layer, recipe.get("_recipe_path", "<recipe>"))
        cfg = OmegaConf.merge(cfg, layer, added)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise RecipeError(f"override(s) {bad} are not of the form key.path=value")
    for o in overrides:
        layer = OmegaConf.to_container(OmegaConf.from_dotlist([o.removeprefix("+")]))
        if not o.startswith("+"):  # '+key=value' adds a key verl does not have
            _check_known_keys(cfg, layer, "override")
        cfg = OmegaConf.merge(cfg, layer)
    _set_length_tokenizer(recipe, cfg)
    from guardrl.integrations.verl.policy_loss import updates_per_step

    try:
        updates = updates_per_step(cfg)  # verl would stop at its first update on a non-multiple batch
    except ValueError as exc:
        raise RecipeError(f"{recipe.get('_recipe_path', '<recipe>')}: {exc}") from exc
    check_bypass(cfg, recipe.get("_recipe_path", "<recipe>"))
    pl = cfg.actor_rollout_ref.actor.policy_loss
    if pl.get("loss_mode") == POLICY_LOSS_NAME and pl.get("updates_per_step") is None:
        pl.updates_per_step = updates  # the loss turns optimizer updates into steps
    return cfg


def check_bypass(cfg: DictConfig, where: str) -> None:
    """Refuse a bypass-mode config (old log-probs = the rollout's) that verl would run wrong or stop on.

    verl 0.9.1's bypass (``algorithm.rollout_correction.bypass_mode``) needs the rollout's log-probs
    (``rollout.calculate_log_probs``; else verl raises at the first step, after the whole start-up). Its
    rejection-sampling / IS options live in verl's own ``bypass_mode`` loss, which the driver names but the
    workers never apply (:func:`guardrl.integrations.verl.trainer.restore_loss_mode`): with guardrl's loss
    they would be ignored without a word, so they are refused.

    Raises:
        RecipeError: naming the key to change.
    """
    rc = cfg.algorithm.get("rollout_correction") or {}
    if not rc.get("bypass_mode", False):
        return
    if not cfg.actor_rollout_ref.rollout.get("calculate_log_probs", False):
        raise RecipeError(f"{where}: algorithm.rollout_correction.bypass_mode=true takes the old log-probs from "
                          "the rollout: set actor_rollout_ref.rollout.calculate_log_probs=true (or bypass_mode=false)")
    loss = cfg.actor_rollout_ref.actor.policy_loss.get("loss_mode")
    unused = [k for k in ("rollout_is", "rollout_rs") if rc.get(k) is not None]
    if loss == POLICY_LOSS_NAME and unused:
        raise RecipeError(f"{where}: algorithm.rollout_correction.{unused[0]} is applied by verl's own bypass_mode "
                          f"loss, not by {POLICY_LOSS_NAME}: set it to null or bypass_mode=false")


def _set_length_tokenizer(recipe: DictConfig, cfg: DictConfig) -> None:
    """Count the reward's reasoning length in the actor's own tokens: ``tokenizer_path`` = the tokenizer
    verl loads for the actor (``model.tokenizer_path``, else ``model.path``), set after every override so
    it follows ``model.path``; ``reward.length_unit: words`` leaves whitespace words."""
    crf = cfg.get("reward", {}).get("custom_reward_function") or {}
    if crf.get("path") != REWARD_FN_PATH:
        return
    kwargs = crf.reward_kwargs
    unit = kwargs.pop("length_unit", "tokens") if "length_unit" in kwargs else "tokens"
    if unit == "words" or kwargs.get("tokenizer_path"):
        return
    model = cfg.actor_rollout_ref.model
    kwargs.tokenizer_path = str(model.get("tokenizer_path") or model.path)


def _split_added(layer: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(checked, added)``: keys written ``+key`` (at any depth, or ``+a.b.c`` dotted) go to ``added``
    without the ``+`` and skip the known-key check, as with Hydra's ``+`` (a field verl's dataclasses
    accept but its YAML lacks, e.g. ``+actor_rollout_ref.rollout.enable_sleep_mode``)."""
    checked: dict[str, Any] = {}
    added: dict[str, Any] = {}
    for key, value in layer.items():
        if isinstance(key, str) and key.startswith("+"):
            node: dict[str, Any] = {}
            parts = key[1:].split(".")
            cur = node
            for p in parts[:-1]:
                cur = cur.setdefault(p, {})
            cur[parts[-1]] = value
            added = OmegaConf.to_container(OmegaConf.merge(added, node))
        elif isinstance(value, dict):
            sub_checked, sub_added = _split_added(value)
            checked[key] = sub_checked
            if sub_added:
                added.setdefault(key, {}).update(sub_added)
        else:
            checked[key] = value
    return checked, added


def verl_plus_overrides(overrides: Sequence[str]) -> list[str]:
    """Recipe overrides ``+verl.a.b=v`` -> ``verl.+a.b=v`` (the ``+`` moves inside the verl mapping)."""
    return [f"verl.+{o[len('+verl.'):]}" if o.startswith("+verl.") else o for o in overrides]


# verl sections that accept free-form keys (passed through to HF / Ray / engines)
_FREE_FORM = ("override_config", "ray_kwargs", "engine_kwargs", "custom_", "extra", "reward_kwargs", "kwargs")


def _check_known_keys(node: DictConfig, layer: dict[str, Any], where: str, prefix: str = "") -> None:
    for key, value in layer.items():
        path = f"{prefix}{key}"
        if any(part in path for part in _FREE_FORM) or path.endswith("policy_loss"):
            continue
        if key not in node.keys():  # noqa: SIM118 - `in` is False for verl's MISSING (???) fields
            raise RecipeError(f"{where}: verl has no config key {path!r}")
        child = node._get_node(key)
        if isinstance(value, dict) and isinstance(child, DictConfig):
            _check_known_keys(child, value, where, prefix=f"{path}.")


def validate(cfg: DictConfig) -> None:
    """Run verl's own config validation (what ``verl.trainer.main_ppo`` runs before training)."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))


def check_data_size(cfg: DictConfig) -> None:
    """Refuse a train set smaller than one batch before any worker starts: verl drops the last partial
    batch, so such a set gives an empty dataloader ("Train dataloader is empty!") deep inside the trainer.

    Raises:
        RecipeError: naming the file, its row count and ``data.train_batch_size``.
    """
    import pyarrow.parquet as pq

    files = cfg.data.train_files
    files = [files] if isinstance(files, str) else [str(f) for f in files]
    if any("://" in f for f in files):  # remote (verl copies hdfs:// files itself): not checked here
        return
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"RL train file(s) not found: {', '.join(missing)} (data.train in the recipe)")
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    need = int(cfg.data.train_batch_size)
    if rows < need:
        raise RecipeError(
            f"RL train set {', '.join(map(str, files))} has {rows} rows, fewer than data.train_batch_size={need}: "
            "reject more prompts (reject.limit, reject.keep.rule) or lower verl.data.train_batch_size")


def set_process_env(recipe: DictConfig) -> dict[str, str]:
    """Env vars for this process and every Ray worker; returns them."""
    env = {
        "VERL_USE_EXTERNAL_MODULES": ",".join(external_modules(recipe)),
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "GUARDRL_RL_RECIPE": str(recipe.get("_recipe_path", "")),
    }
    if str(recipe.get("device", "cuda")) == "cpu":
        env["VERL_PLATFORM"] = "cpu"
        env["OMP_NUM_THREADS"] = str(recipe.get("threads_per_process", 1))
    repo_root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, os.environ.get("PYTHONPATH", "")) if p)
    os.environ.update(env)
    return env


def start_ray(recipe: DictConfig, cfg: DictConfig, env: dict[str, str]) -> None:
    """``ray.init`` with verl's runtime env plus guardrl's; a local head declares logical GPUs on a CPU."""
    import ray
    from verl.trainer.constants_ppo import get_ppo_ray_runtime_env

    if ray.is_initialized():
        return
    from guardrl.integrations.ray import init_ray

    runtime_env = OmegaConf.to_container(
        OmegaConf.merge(get_ppo_ray_runtime_env(cfg), cfg.ray_kwargs.get("ray_init", {}).get("runtime_env", {}))
    )
    runtime_env.setdefault("env_vars", {}).update(env)
    n_workers = int(cfg.trainer.n_gpus_per_node) * int(cfg.trainer.nnodes)
    cpu = str(recipe.get("device", "cuda")) == "cpu"
    init_ray(num_cpus=recipe.get("ray_num_cpus") or max(8, 4 * n_workers), runtime_env=runtime_env,
             num_gpus=n_workers if cpu else None,  # logical on a CPU: verl's resource pools count "GPU"
             fresh_temp_dir=True, logging_level=logging.INFO)


def bootstrap(recipe: DictConfig) -> None:
    """Build what a CPU recipe may ask for when missing: the tiny model, a demo RL set."""
    m = recipe.model
    if not isinstance(m, str) and m.get("build_tiny_if_missing"):
        path = Path(model_path(recipe))
        if not path.exists():
            from guardrl.models.tiny import build_tiny_model

            log.info("building the tiny model at %s", path)
            build_tiny_model(path, seed=0)
    data = recipe.get("data") or {}
    if data.get("build_demo_if_missing") and not Path(data.train).exists():
        n = int(data.get("demo_rows", 96))
        write_demo_rl_set(DEMO_SOURCE, Path(data.train), Path(data.get("val") or data.train), n,
                          task_name=recipe.get("task"), task_modules=list(recipe.get("task_modules") or []))


DEMO_SOURCE = Path(__file__).resolve().parents[3] / "data" / "guard-mini" / "train.jsonl"


def write_demo_rl_set(source: Path, train: Path, val: Path, n: int, seed: int = 0, task_name: str | None = None,
                      task_modules: Sequence[str] = ()) -> None:
    """A small verl RL set (train + dev) from a guard-mini style JSONL, for CPU runs without an RL set.

    Text rows whose prompt and response are at most 600 characters and that carry a label, shuffled
    with ``seed``: the first ``n`` are train, the next ``max(8, n // 4)`` dev, written by the RL set's
    own writer (:func:`guardrl.integrations.verl.rows.write_verl_parquet`, data only, ``data_source``
    "guard-mini"). The real RL set comes from rejection sampling (``guardrl reject``, ``guardrl augment``).
    """
    import json
    import random

    from guardrl.core.schema import Sample, normalize_label
    from guardrl.integrations.verl.rows import write_verl_parquet
    from guardrl.tasks import get_task

    samples = []
    with Path(source).open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            req = normalize_label(r.get("label_prompt"))
            resp = normalize_label(r.get("label_response")) if r.get("response") else None
            if (req is None and resp is None) or len(r.get("prompt") or "") > 600 or len(r.get("response") or "") > 600:
                continue
            samples.append(Sample(id=r["id"], source="guard-mini", modality="text", request=r.get("prompt") or "",
                                  response=r.get("response"), label_request=req, label_response=resp))
    random.Random(seed).shuffle(samples)
    n_val = max(8, n // 4)
    task = get_task(task_name, task_modules)
    for path, part in ((train, samples[:n]), (val, samples[n : n + n_val])):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_verl_parquet(part, path, task)
    log.info("demo RL set: %d train rows -> %s, %d dev rows -> %s", min(n, len(samples)), train, n_val, val)


def _logging_env(recipe: DictConfig, cfg: DictConfig) -> dict[str, str]:
    """Where verl's file logger and wandb write: ``<output_dir>/metrics.jsonl``, ``<output_dir>/wandb``."""
    out = Path(recipe.get("output_dir") or cfg.trainer.default_local_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    if metrics.exists():  # verl's file logger truncates; keep the previous run's lines (resume)
        n = len(list(out.glob("metrics.*.jsonl")))
        os.replace(metrics, out / f"metrics.{n}.jsonl")
    return {"VERL_FILE_LOGGER_PATH": str(metrics.resolve()), "WANDB_DIR": str(out.resolve())}


def _finished_step(cfg: DictConfig) -> int | None:
    """The last checkpointed step when it already reaches ``total_training_steps`` (and resuming is on), else None."""
    total = cfg.trainer.get("total_training_steps")
    latest = Path(cfg.trainer.default_local_dir) / "latest_checkpointed_iteration.txt"
    if total is None or cfg.trainer.get("resume_mode", "auto") == "disable" or not latest.is_file():
        return None
    try:
        step = int(latest.read_text().strip())
    except ValueError:
        return None
    return step if step >= int(total) else None


def run(recipe_path: str | Path, overrides: Sequence[str] = (), verl_overrides: Sequence[str] = ()) -> DictConfig:
    """Compose, validate and run verl's PPO trainer for a guardrl recipe; returns the config used.

    Args:
        recipe_path: a guardrl RL recipe.
        overrides: dotted overrides of the recipe (``clip.schedule=constant``,
            ``verl.trainer.total_training_steps=2``).
        verl_overrides: dotted overrides applied last on verl's composed config.
    """
    recipe = load_recipe(recipe_path, verl_plus_overrides(overrides))
    parse_rl_recipe(recipe)  # fail on a typo before any import, model build or Ray start
    env = set_process_env(recipe)
    for mod in external_modules(recipe):  # the driver needs them too (platform, registries)
        __import__(mod)
    bootstrap(recipe)
    cfg = compose_config(recipe, verl_overrides)
    from verl.utils.device import auto_set_device

    auto_set_device(cfg)
    validate(cfg)
    check_data_size(cfg)
    done = _finished_step(cfg)
    if done is not None:  # verl would resume at the last step and train one step past the end
        log.info("rl: already trained to step %d (total_training_steps=%d) in %s; nothing to do", done,
                 cfg.trainer.total_training_steps, cfg.trainer.default_local_dir)
        return cfg
    env.update(_logging_env(recipe, cfg))
    os.environ.update(env)
    start_ray(recipe, cfg, env)
    t0 = time.perf_counter()
    import ray
    from verl.trainer.main_ppo import run_ppo

    try:
        if cfg.trainer.use_v1:
            from verl.trainer.main_ppo import TaskRunnerV1 as runner

            if cfg.actor_rollout_ref.actor.policy_loss.get("loss_mode") == POLICY_LOSS_NAME:
                from guardrl.integrations.verl.policy_loss import UNPINNED_WARNING

                log.warning(UNPINNED_WARNING)
            run_ppo(cfg, task_runner_class=runner)
        elif not ray.util.client.ray.is_connected():  # the task runner in this process (see trainer.py)
            from guardrl.integrations.verl.trainer import DriverTaskRunner

            DriverTaskRunner().run(cfg)
        else:
            from guardrl.integrations.verl.trainer import GuardTaskRunner

            run_ppo(cfg, task_runner_class=GuardTaskRunner)
    finally:
        if recipe.get("shutdown_ray", True):
            time.sleep(2)  # let Ray's log monitor flush the workers' last lines
            ray.shutdown()
    log.info("rl finished in %.1fs; checkpoints in %s", time.perf_counter() - t0, cfg.trainer.default_local_dir)
    return cfg
