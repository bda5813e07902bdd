"""Every stage of every pipeline, and every stand-alone recipe chain, reads what an earlier stage writes.

No GPU, nothing trained: each stage's recipe is loaded with the overrides the pipeline gives it (the
pipeline's own command plan, ``guardrl.stages.pipeline.commands.STAGE_COMMANDS``) and parsed by the stage's own
config (``SFTConfig``, ``RejectConfig``, ``AugmentConfig``, verl's composed RL config, the export
section, ``EvalConfig``); its input paths must be outputs of an earlier stage, except the declared
external sources (the raw data, the base model, the benchmark sets, repository files).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrl.core.recipe import load_recipe, to_container
from guardrl.stages.pipeline import rewrite_stages
from guardrl.stages.pipeline.commands import STAGE_COMMANDS
from guardrl.stages.pipeline.runner import STAGE_ORDER, StageContext, get_stage, recipe_stages

REPO = Path(__file__).resolve().parents[2]
PIPELINES = sorted((REPO / "recipes").glob("*/pipeline.yaml"))
SIZES = sorted(p.parent.name for p in (REPO / "recipes").glob("*/rl.yaml"))


def _io(args: list[str]) -> tuple[list[str], list[str], list[str]]:
    """``(inputs from earlier stages, external inputs, outputs)`` of one ``guardrl`` command, each read
    through the stage's own config loader."""
    cmd = args[:2]
    rest = [a for a in args[2:] if a != "--recipe"]
    if cmd[0] == "data":
        out = args[args.index("--out") + 1]
        return [], [args[args.index("--src") + 1]], [out]
    if cmd == ["eval", "compare"]:
        return rest[:2], [], [args[args.index("--out") + 1]]
    recipe, overrides = REPO / rest[0], rest[1:]
    if cmd == ["sft", "evaluate"]:
        return [rest[0], args[args.index("--data") + 1]], [], [args[args.index("--out") + 1]]
    if cmd == ["rewrite", "synth"]:
        from guardrl.stages.rewrite.synth import SynthConfig

        c = SynthConfig.from_dict(to_container(load_recipe(REPO / rest[1], rest[2:]))["rewrite_synth"])
        return [c.data], [], [c.out]
    if cmd == ["rewrite", "eval"]:
        from guardrl.stages.rewrite.evaluate import config_from_section

        c = config_from_section(to_container(load_recipe(REPO / rest[1], rest[2:]))["rewrite_eval"])
        models = [*(r.model for r in c.rewriters), c.guard.model]
        return models + [b["path"] for b in c.benchmarks], [t.model for t in c.targets], [c.out]
    if cmd in (["sft", "train"], ["sft", "run"]):
        from guardrl.stages.sft.config import from_recipe

        c = from_recipe(load_recipe(recipe, overrides))
        return [c.data.path], [c.model.path], [c.trainer.output_dir, f"{c.trainer.output_dir}/hf"]
    if cmd == ["reject", "run"]:
        from guardrl.stages.reject.runner import RejectConfig

        c = RejectConfig.from_dict(to_container(load_recipe(recipe, overrides))["reject"])
        return [c.data, c.model], [], [c.out]
    if cmd == ["augment", "run"]:
        from guardrl.stages.augment.runner import AugmentConfig

        c = AugmentConfig.from_dict(to_container(load_recipe(recipe, overrides))["augment"])
        return [c.data], [], [c.out, f"{c.out}/verl/train.parquet", f"{c.out}/verl/dev.parquet"]
    if cmd == ["rl", "run"]:
        from guardrl.integrations.verl import entry

        r = load_recipe(recipe, entry.verl_plus_overrides(overrides))
        cfg = entry.compose_config(r)
        inputs = [cfg.actor_rollout_ref.model.path, cfg.data.train_files, cfg.data.val_files]
        built = []  # a CPU demo recipe that builds its own model / RL set when missing says so
        if r.model.get("build_tiny_if_missing"):
            built.append(cfg.actor_rollout_ref.model.path)
        if (r.get("data") or {}).get("build_demo_if_missing"):
            built += [cfg.data.train_files, cfg.data.val_files]
        return ([p for p in inputs if p not in built], built,
                [str(r.output_dir), f"{r.output_dir}/checkpoints"])
    if cmd == ["export", "run"]:
        from guardrl.stages.export.cli import SECTION_KEYS

        s = to_container(load_recipe(recipe, overrides))["export"]
        assert set(s) <= SECTION_KEYS
        inputs = [s["checkpoint"], *s.get("manifests", [])] + ([s["processor"]] if s.get("processor") else [])
        return inputs, list(s.get("recipes", [])), [s["out"]]
    if cmd == ["eval", "run"]:
        from guardrl.stages.eval.runner import EvalConfig

        s = to_container(load_recipe(recipe, overrides))["eval"]
        fields = set(EvalConfig.__dataclass_fields__) | {"benchmarks", "limit", "expected_samples"}
        assert set(s) <= fields, set(s) - fields
        bench = [b["path"] if isinstance(b, dict) else b for b in s["benchmarks"]]
        ours = [b for b in bench if not str(b).startswith("outputs/benchmarks")]
        return [s["model"], *ours], [b for b in bench if b not in ours], [s["out"]]
    raise AssertionError(f"unknown command {args}")


def _produced(path: str, outputs: list[str]) -> bool:
    p = Path(path)
    return any(p == Path(o) or Path(o) in p.parents for o in outputs)


def _check_chain(commands: list[tuple[str, list[str]]]) -> list[str]:
    """Run the check over (stage, command) in order; returns the problems (empty = wired)."""
    outputs: list[str] = []
    problems = []
    for stage, args in commands:
        inputs, _external, outs = _io(args)
        for p in inputs:
            if not _produced(str(p), outputs):
                problems.append(f"{stage}: reads {p}, which no earlier stage writes")
        outputs += [str(o) for o in outs]
    return problems


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.parent.name)
def test_every_pipeline_stage_reads_an_earlier_stages_output(pipeline: Path):
    recipe = to_container(load_recipe(pipeline))
    run_dir = Path(recipe["run_dir"])
    commands = []
    for name in STAGE_ORDER:
        section = recipe["stages"][name]
        if section.get("recipe"):
            assert (REPO / section["recipe"]).is_file(), section["recipe"]
            assert section["recipe"].startswith(f"recipes/{pipeline.parent.name}/")  # one size per pipeline
        ctx = StageContext(name, section, recipe, run_dir / name, {n: run_dir / n for n in get_stage(name).needs},
                           run_dir)
        commands += [(name, c) for c in STAGE_COMMANDS[name](ctx)]
    assert _check_chain(commands) == []


REWRITE_PIPELINES = sorted((REPO / "recipes").glob("*/rewrite_pipeline.yaml"))


@pytest.mark.parametrize("pipeline", REWRITE_PIPELINES, ids=lambda p: p.parent.name)
def test_rewrite_pipeline_chains_and_shares_the_guard_pipelines_first_stages(pipeline: Path):
    recipe = to_container(load_recipe(pipeline))
    guard = to_container(load_recipe(pipeline.with_name("pipeline.yaml")))
    # same run folder, same data + guard SFT settings: a folder where the guard pipeline ran skips them
    assert recipe["run_dir"] == guard["run_dir"]
    assert {k: recipe["stages"][k] for k in ("data", "sft")} == {k: guard["stages"][k] for k in ("data", "sft")}
    assert recipe_stages(recipe) == ["data", "sft", "rewrite_synth", "rewrite_sft", "rewrite_eval"]
    run_dir = Path(recipe["run_dir"])
    plans = {**STAGE_COMMANDS, **rewrite_stages.STAGE_COMMANDS}
    for b in recipe["stages"]["rewrite_eval"]["benchmarks"]:
        if not Path(b["src"]).exists():
            pytest.skip(f"{b['src']} is absent (the published benchmark files; set GUARDRL_REAL_BENCHMARKS)")
    commands = []
    for name in recipe_stages(recipe):
        section = recipe["stages"][name]
        ctx = StageContext(name, section, recipe, run_dir / name, {n: run_dir / n for n in get_stage(name).needs},
                           run_dir)
        commands += [(name, c) for c in plans[name](ctx)]
    assert _check_chain(commands) == []


@pytest.mark.parametrize("size", ["qwen2_5_vl_3b", "qwen2_5_vl_7b"])
def test_gpu_sizes_have_a_pipeline(size: str):
    assert (REPO / "recipes" / size / "pipeline.yaml").is_file()
    first = (REPO / "recipes" / size / "pipeline.yaml").read_text().splitlines()[0]
    assert first.startswith(f"# make pipeline PIPELINE=recipes/{size}/pipeline.yaml")


def _standalone(size: str, rl: str) -> list[tuple[str, list[str]]]:
    d = f"recipes/{size}"
    return [("sft", ["sft", "train", f"{d}/sft.yaml"]), ("reject", ["reject", "run", "--recipe", f"{d}/reject.yaml"]),
            ("augment", ["augment", "run", "--recipe", f"{d}/augment.yaml"]), ("rl", ["rl", "run", f"{d}/{rl}"])]


@pytest.mark.parametrize("size", SIZES)
def test_standalone_recipes_chain_sft_reject_augment_rl_export_eval(size: str):
    """``make sft/reject/augment/rl/export/eval RECIPE=recipes/<size>/...`` one after the other, no
    overrides: each reads what the previous wrote (today's 3B/7B rl.yaml read outputs/rl/<size>/train.parquet,
    which no stage writes). The SFT data dir counts as the data stage's output."""
    from guardrl.stages.sft.config import from_recipe

    d = f"recipes/{size}"
    data = from_recipe(load_recipe(REPO / d / "sft.yaml")).data.path
    chain = [("data", ["data", "guard-mini", "--src", "-", "--out", data])] + _standalone(size, "rl.yaml")
    chain += [("export", ["export", "run", "--recipe", f"{d}/export.yaml"]),
              ("eval", ["eval", "run", "--recipe", f"{d}/eval.yaml"])]
    assert _check_chain(chain) == []
    for eco in sorted((REPO / d).glob("rl_*.yaml")):  # variants read the same inputs
        assert _check_chain(chain[:4] + [("rl", ["rl", "run", f"{d}/{eco.name}"])]) == []
