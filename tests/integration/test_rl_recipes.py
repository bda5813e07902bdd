"""Every RL recipe composes into a verl PPO config that verl's own validation accepts (no GPU, no weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from guardrl.core.recipe import RecipeError, load_recipe
from guardrl.integrations.verl import entry

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*/rl*.yaml"))


def _compose(path: Path, *overrides: str):
    recipe = load_recipe(path, overrides)
    return recipe, entry.compose_config(recipe)


def test_recipes_exist():
    names = {f"{p.parent.name}/{p.name}" for p in RECIPES}
    for size in ("qwen2_5_vl_3b", "qwen2_5_vl_7b"):
        assert {f"{size}/rl.yaml", f"{size}/rl_eco.yaml"} <= names
    assert "tiny/rl.yaml" in names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_composes_and_verl_validates(path: Path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# make rl RECIPE=") and str(path.relative_to(path.parents[2])) in first
    recipe, cfg = _compose(path)
    import guardrl.integrations.verl.policy_loss  # noqa: F401  (registers the loss verl's validation looks up)

    entry.validate(cfg)  # verl.utils.config.validate_config: batch sizes, micro batches, actor config
    from verl.utils.config import omega_conf_to_dataclass

    omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)  # RolloutConfig.__post_init__ checks
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert type(actor.policy_loss).__name__ == "DynamicClipPolicyLossConfig"
    assert cfg.reward.custom_reward_function.path == "pkg://guardrl.integrations.verl.reward"
    kw = cfg.reward.custom_reward_function.reward_kwargs
    assert kw.max_length == cfg.data.max_response_length


@pytest.mark.parametrize("size", ["qwen2_5_vl_3b", "qwen2_5_vl_7b"])
def test_paper_defaults(size: str, repo_root: Path):
    _, cfg = _compose(repo_root / "recipes" / size / "rl.yaml")
    arr = cfg.actor_rollout_ref
    assert cfg.algorithm.adv_estimator == "grpo"
    assert cfg.algorithm.use_kl_in_reward is False and arr.actor.use_kl_loss is False
    assert arr.rollout.n == 16 and arr.rollout.temperature == 1.2
    assert cfg.data.train_batch_size == 512 and arr.actor.ppo_mini_batch_size == 256
    assert arr.actor.optim.lr == 1e-6 and arr.actor.optim.weight_decay == 1e-2
    assert arr.actor.clip_ratio == 0.2
    assert arr.actor.policy_loss.loss_mode == "guardrl_dynamic_clip"
    assert arr.actor.policy_loss.clip_schedule == "linear"
    assert arr.actor.policy_loss.updates_per_step == 2  # 512 / 256 optimizer updates per step
    assert arr.rollout.name == "vllm" and arr.actor.strategy == "fsdp2"
    assert cfg.trainer.device == "cuda"
    eco_recipe, eco = _compose(repo_root / "recipes" / size / "rl_eco.yaml")
    from guardrl.tasks.guard.reward import ECO_BETA

    eco_kw = eco.reward.custom_reward_function.reward_kwargs
    # Eco = the released code's cap: beta = 500 / 3072 of max_response_length; no extra cost on correct answers
    assert eco_kw.beta == pytest.approx(ECO_BETA, abs=1e-5) and "eco_budget" not in eco_kw
    assert cfg.reward.custom_reward_function.reward_kwargs.beta == 1.0
    assert eco.trainer.default_local_dir != cfg.trainer.default_local_dir
    assert eco.data.train_files == cfg.data.train_files


def test_tiny_recipe_maps_onto_the_cpu_path(repo_root: Path):
    _, cfg = _compose(repo_root / "recipes" / "tiny" / "rl.yaml")
    assert cfg.trainer.device == "cpu"
    assert cfg.actor_rollout_ref.rollout.name == "hf"
    assert cfg.actor_rollout_ref.rollout.tensor_model_parallel_size == 1
    assert cfg.actor_rollout_ref.actor.strategy == "fsdp2"
    assert cfg.actor_rollout_ref.model.override_config.attn_implementation == "sdpa"


def test_ablation_switches(repo_root: Path):
    path = repo_root / "recipes" / "qwen2_5_vl_3b" / "rl.yaml"
    _, cfg = _compose(path, "clip.schedule=constant", "reward.no_length=true")
    assert cfg.actor_rollout_ref.actor.policy_loss.clip_schedule == "constant"
    assert cfg.reward.custom_reward_function.reward_kwargs.no_length is True


def test_every_verl_field_is_overridable(repo_root: Path):
    path = repo_root / "recipes" / "qwen2_5_vl_7b" / "rl.yaml"
    recipe, cfg = _compose(path, "verl.trainer.nnodes=4", "verl.actor_rollout_ref.rollout.gpu_memory_utilization=0.5")
    assert cfg.trainer.nnodes == 4 and cfg.actor_rollout_ref.rollout.gpu_memory_utilization == 0.5
    cfg = entry.compose_config(recipe, ["algorithm.gamma=0.9", "+actor_rollout_ref.model.override_config.foo=1"])
    assert cfg.algorithm.gamma == 0.9
    assert OmegaConf.select(cfg, "actor_rollout_ref.model.override_config.foo") == 1


def test_unknown_verl_key_is_an_error(repo_root: Path):
    path = repo_root / "recipes" / "qwen2_5_vl_3b" / "rl.yaml"
    with pytest.raises(RecipeError, match="trainer.totl_training_steps"):
        _compose(path, "verl.trainer.totl_training_steps=3")
    recipe = load_recipe(path)
    with pytest.raises(RecipeError, match="no config key"):
        entry.compose_config(recipe, ["algorithm.gama=0.9"])


def test_a_train_set_smaller_than_one_batch_is_refused_before_training(repo_root: Path, tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, cfg = _compose(repo_root / "recipes/tiny/rl.yaml")
    small = tmp_path / "train.parquet"
    pq.write_table(pa.table({"x": list(range(cfg.data.train_batch_size - 1))}), small)
    cfg.data.train_files = str(small)
    with pytest.raises(RecipeError, match=rf"{small}.* has {cfg.data.train_batch_size - 1} rows.*train_batch_size"):
        entry.check_data_size(cfg)
    pq.write_table(pa.table({"x": list(range(cfg.data.train_batch_size))}), small)
    entry.check_data_size(cfg)  # one full batch: accepted
    cfg.data.train_files = [str(tmp_path / "missing.parquet")]
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        entry.check_data_size(cfg)


# ------------------------------------------------------------------ typed guardrl keys, '+' for verl fields
@pytest.mark.parametrize("override,key", [("clip.schedul=cosine", "clip.schedul"), ("reward.betta=1", "reward.betta"),
                                          ("model.pth=x", "model.pth"), ("data.trian=x", "data.trian"),
                                          ("rewards.beta=1", "rewards")])
def test_an_unknown_guardrl_key_names_the_recipe_and_the_key(repo_root: Path, override: str, key: str):
    path = repo_root / "recipes" / "qwen2_5_vl_7b" / "rl.yaml"
    with pytest.raises(RecipeError, match=rf"qwen2_5_vl_7b/rl.yaml: unknown key\(s\) \['{key}'\]"):
        _compose(path, override)


def test_bad_guardrl_values_are_refused_at_load(repo_root: Path):
    path = repo_root / "recipes" / "qwen2_5_vl_3b" / "rl.yaml"
    for override, msg in [("clip.schedule=cosin", "clip.schedule"), ("reward.l_min=0", "l_min"),
                          ("reward.length_unit=chars", "length_unit"), ("device=tpu", "device")]:
        with pytest.raises(RecipeError, match=msg):
            _compose(path, override)


def test_every_guardrl_field_has_help_and_defaults_come_from_one_place():
    from guardrl.core.clipping import DEFAULT_FLOOR
    from guardrl.integrations.verl.recipe_config import (
        ClipFields,
        DataFields,
        ModelFields,
        RLRecipe,
        field_help,
    )
    from guardrl.tasks.guard.reward import DEFAULT_CONFIG
    from guardrl.tasks.guard.reward import RewardConfig as RewardFields

    for cls in (RLRecipe, ModelFields, DataFields, RewardFields, ClipFields):
        assert all(len(h) > 20 for h in field_help(cls).values()), cls
    r = RewardFields()
    assert (r.beta, r.l_min, r.eco_coef) == (DEFAULT_CONFIG.beta, DEFAULT_CONFIG.l_min, DEFAULT_CONFIG.eco_coef)
    assert ClipFields().floor == DEFAULT_FLOOR


def test_clip_defaults_when_the_recipe_leaves_them_out(repo_root: Path):
    _, cfg = _compose(repo_root / "recipes" / "qwen2_5_vl_3b" / "rl.yaml", "clip={}")
    actor = cfg.actor_rollout_ref.actor
    assert actor.clip_ratio == 0.2 and actor.policy_loss.clip_floor == 0.01 and actor.policy_loss.clip_schedule == "linear"


def test_plus_adds_a_verl_dataclass_field_missing_from_its_yaml(repo_root: Path):
    from verl.utils.config import omega_conf_to_dataclass

    path = repo_root / "recipes" / "qwen2_5_vl_7b" / "rl.yaml"
    with pytest.raises(RecipeError, match="no config key 'actor_rollout_ref.rollout.enable_sleep_mode'"):
        _compose(path, "verl.actor_rollout_ref.rollout.enable_sleep_mode=false")
    recipe = load_recipe(path, entry.verl_plus_overrides(["+verl.actor_rollout_ref.rollout.enable_sleep_mode=false"]))
    cfg = entry.compose_config(recipe)
    assert cfg.actor_rollout_ref.rollout.enable_sleep_mode is False and cfg.actor_rollout_ref.rollout.n == 16
    assert omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout).enable_sleep_mode is False  # verl accepts it
    # in the recipe's verl mapping too, at any depth
    recipe = load_recipe(path)
    recipe.verl.actor_rollout_ref.rollout["+enable_sleep_mode"] = False
    assert entry.compose_config(recipe).actor_rollout_ref.rollout.enable_sleep_mode is False


def test_reasoning_length_is_counted_with_the_actors_tokenizer(repo_root: Path, tiny_model_dir: Path):
    """No recipe setting: compose passes the actor's tokenizer to the reward; `length_unit: words` opts out.
    English, Chinese and code reasoning get the tokenizer's counts (whitespace words would give 7, 1 and 3)."""
    from transformers import AutoTokenizer

    from guardrl.integrations.verl.reward import compute_score

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    path = repo_root / "recipes" / "tiny" / "rl.yaml"
    _, cfg = _compose(path, f"model.path={tiny_model_dir}")
    kw = dict(cfg.reward.custom_reward_function.reward_kwargs)
    assert kw["tokenizer_path"] == str(tiny_model_dir)
    kw["max_length"] = cfg.data.max_response_length
    texts = {"english": "The request asks for a bomb recipe.",
             "chinese": "这个请求要求制作炸弹的方法，属于有害内容。" * 3,
             "code": "def f(x):\n    return os.system(x)"}
    for name, reasoning in texts.items():
        out = f"<think>\n{reasoning}\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"
        parts = compute_score("s", out, {"request": "harmful"}, **kw)
        want = len(tok.encode(reasoning, add_special_tokens=False))
        assert parts["reasoning_tokens"] == want, name
        assert want != len(reasoning.split()), name
    _, words = _compose(path, f"model.path={tiny_model_dir}", "reward.length_unit=words")
    assert "tokenizer_path" not in words.reward.custom_reward_function.reward_kwargs


def test_tiny_recipe_cpu_rollouts(repo_root: Path):
    """``rollout: hf`` (default) is guardrl's HF server; ``rollout: vllm`` is verl's vLLM server with the settings
    vLLM's CPU build needs; anything else is refused naming the valid ones."""
    tiny = repo_root / "recipes" / "tiny" / "rl.yaml"
    _, cfg = _compose(tiny)
    assert cfg.actor_rollout_ref.rollout.name == "hf"
    _, cfg = _compose(tiny, "rollout=vllm")
    r = cfg.actor_rollout_ref.rollout
    assert r.name == "vllm" and r.enforce_eager is True and r.mode == "async"
    assert r.engine_kwargs.vllm.enable_sleep_mode is False
    assert r.engine_kwargs.vllm.kv_cache_memory_bytes == 512 * 2**20
    from verl.utils.config import omega_conf_to_dataclass

    omega_conf_to_dataclass(r)  # verl's RolloutConfig accepts it
    with pytest.raises(RecipeError, match=r"rollout 'sglang'; valid: \['hf', 'vllm'\]"):
        _compose(tiny, "rollout=sglang")


def test_a_batch_that_is_not_a_multiple_of_the_mini_batch_is_refused_at_compose(repo_root: Path):
    """verl 0.9.1 cuts a step's batch into whole mini-batches (make_iterator asserts it): 12 prompts, mini-batch 8
    would stop at the first update, so compose refuses it, naming both keys."""
    path = repo_root / "recipes" / "tiny" / "rl.yaml"
    with pytest.raises(RecipeError, match=r"tiny/rl.yaml: data.train_batch_size=12 is not a multiple of "
                                          r"actor.ppo_mini_batch_size=8"):
        _compose(path, "verl.data.train_batch_size=12")


def test_the_task_travels_to_the_dataset_and_the_reward(repo_root: Path):
    _, cfg = _compose(repo_root / "recipes" / "tiny" / "rl.yaml")
    assert cfg.data.custom_cls.path == "pkg://guardrl.integrations.verl.dataset" and cfg.data.custom_cls.name == "TaskRLDataset"
    assert cfg.data.task == "guard" and list(cfg.data.task_modules) == []
    assert cfg.reward.custom_reward_function.reward_kwargs.task == "guard"
    with pytest.raises(RecipeError, match=r"tiny/rl.yaml: task: .*rewriter.*guard"):
        _compose(repo_root / "recipes" / "tiny" / "rl.yaml", "task=rewriter")


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*/rewrite_rl.yaml")),
                         ids=lambda p: p.parent.name)
def test_rewrite_rl_recipes_compose_with_the_judged_reward(path: Path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# make rl RECIPE=") and str(path.relative_to(path.parents[2])) in first
    _, cfg = _compose(path)
    import guardrl.integrations.verl.policy_loss  # noqa: F401

    entry.validate(cfg)
    crf = cfg.reward.custom_reward_function
    assert crf.path == "pkg://guardrl.stages.rewrite.rl_reward" and crf.reward_kwargs.task == "rewrite"
    assert "max_length" not in crf.reward_kwargs and crf.reward_kwargs.w_safety > 0
    assert crf.reward_kwargs.target.model and crf.reward_kwargs.guard.model


def test_a_judged_rewrite_reward_without_services_is_refused(repo_root: Path):
    with pytest.raises(RecipeError, match=r"need the service\(s\) \['reward.guard'\]"):
        _compose(repo_root / "recipes" / "tiny" / "rewrite_rl.yaml", "reward.guard=null")
