"""The rewriter's stages (VLMGuard-R1): ``rewrite_synth`` -> ``rewrite_sft`` -> ``rewrite_eval``.

They run after the guard pipeline's ``data`` and ``sft`` stages in the same run folder (a rewrite pipeline
recipe lists those two with the guard pipeline's settings, so a folder where ``make demo`` ran reuses them):

- ``rewrite_synth``: ``guardrl rewrite synth run`` over the data stage's ``train`` split (the three teacher
  stages; the templated teacher on a CPU);
- ``rewrite_sft``: ``guardrl sft run`` of the rewriter on those rows, then ``guardrl sft evaluate --task
  rewrite`` on the data stage's ``dev`` prompts (never trained on): the rewriter's parse rate;
- ``rewrite_eval``: each benchmark converted (``guardrl data convert NAME --src SRC``), then ``guardrl rewrite
  eval run``: the rewriter vs no rewriter, each target VLM answering, the guard stage's model judging.

Like the guard's stages (:mod:`guardrl.stages.pipeline.commands`) each is the command a user runs by hand,
pointed at the pipeline's folders; ``STAGE_COMMANDS`` holds the plans (pure), the functions below run them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from guardrl.stages.pipeline.commands import (
    ray_env,
    read_manifest,
    run_cli,
    sft_summary,
    stage_overrides,
    stage_recipe,
)
from guardrl.stages.pipeline.runner import StageContext, register_stage

DEV_REPORT = "dev_eval.json"  # in rewrite_sft's folder: the rewriter's parse rate on dev prompts


def eval_results_dir(out_dir: Path) -> Path:
    """Where ``rewrite_eval`` (stage folder ``out_dir``) has ``guardrl rewrite eval run`` write its results."""
    return out_dir / "results"


def _base_model(ctx: StageContext) -> Path:
    return Path(str(ctx.config.get("base_model") or ctx.run_dir / "base-model"))


def synth_commands(ctx: StageContext) -> list[list[str]]:
    fixed = {"rewrite_synth.data": ctx.inputs["data"], "rewrite_synth.split": "train",
             "rewrite_synth.out": ctx.out_dir}
    return [["rewrite", "synth", "run", stage_recipe(ctx), *stage_overrides(ctx, fixed)]]


def sft_commands(ctx: StageContext) -> list[list[str]]:
    """Train the rewriter, then its parse rate on ``dev_samples`` dev prompts (default 96)."""
    fixed = {"data.path": ctx.inputs["rewrite_synth"], "data.train_split": "null", "data.dev_split": "null",
             "trainer.output_dir": ctx.out_dir, "model.path": _base_model(ctx)}
    dev = ["sft", "evaluate", str(ctx.out_dir / "hf"), "--data", str(ctx.inputs["data"]), "--split", "dev",
           "--task", "rewrite", "--max-samples", str(int(ctx.config.get("dev_samples", 96))),
           "--max-new-tokens", str(int(ctx.config.get("dev_max_new_tokens", 256))),
           "--out", str(ctx.out_dir / DEV_REPORT)]
    return [["sft", "run", stage_recipe(ctx), *stage_overrides(ctx, fixed)], dev]


def benchmark_folder(ctx: StageContext, name: str) -> Path:
    return ctx.out_dir / "benchmarks" / name


def eval_commands(ctx: StageContext) -> list[list[str]]:
    """One ``data convert`` per benchmark (``{name, converter, src[, images]}``), then the evaluation.

    Raises:
        ValueError: no benchmark, a benchmark without ``name``/``converter``/``src``, or a ``src`` that is not there.
    """
    benches = list(ctx.config.get("benchmarks") or [])
    if not benches:
        raise ValueError("pipeline recipe: stages.rewrite_eval.benchmarks lists no benchmark")
    cmds, listed = [], []
    for i, b in enumerate(benches):
        missing = [k for k in ("name", "converter", "src") if not b.get(k)]
        if missing:
            raise ValueError(f"pipeline recipe: stages.rewrite_eval.benchmarks[{i}] lacks {missing}")
        src = Path(str(b["src"]))
        if not src.exists():
            raise ValueError(f"pipeline recipe: stages.rewrite_eval.benchmarks[{i}] ({b['name']}): {src} does not "
                             f"exist (the benchmark's published files; see the recipe's comment for where to get them)")
        out = benchmark_folder(ctx, str(b["name"]))
        convert = ["data", "convert", str(b["converter"]), "--src", str(src), "--out", str(out)]
        if b.get("images"):
            convert += ["--images", str(b["images"])]
        cmds.append(convert)
        listed.append({"path": str(out), "name": str(b["name"])})
    fixed: dict[str, Any] = {"rewrite_eval.rewriter.model": ctx.inputs["rewrite_sft"] / "hf",
                             "rewrite_eval.guard.model": ctx.inputs["sft"] / "hf",
                             "rewrite_eval.benchmarks": listed, "rewrite_eval.out": eval_results_dir(ctx.out_dir)}
    if ctx.config.get("targets"):  # else the stage recipe's own
        fixed["rewrite_eval.targets"] = [dict(t) for t in ctx.config["targets"]]
    cmds.append(["rewrite", "eval", "run", stage_recipe(ctx), *stage_overrides(ctx, fixed)])
    return cmds


# stage -> the guardrl commands it runs (pure)
STAGE_COMMANDS = {"rewrite_synth": synth_commands, "rewrite_sft": sft_commands, "rewrite_eval": eval_commands}


@register_stage("rewrite_synth", needs=("data",))
def synth_stage(ctx: StageContext) -> dict[str, Any]:
    (cmd,) = synth_commands(ctx)
    run_cli(ctx, cmd, env=ray_env())
    synth = read_manifest(ctx.out_dir).get("rewrite_synth") or {}
    return {k: synth[k] for k in ("written", "seen", "skipped") if k in synth}


@register_stage("rewrite_sft", needs=("data", "rewrite_synth"))
def sft_stage(ctx: StageContext) -> dict[str, Any]:
    train, dev = sft_commands(ctx)
    run_cli(ctx, train, env=ray_env(), tag="train")
    run_cli(ctx, dev, tag="dev")
    report = json.loads((ctx.out_dir / DEV_REPORT).read_text())
    return {**sft_summary(ctx.out_dir), "dev_parse_rate": report.get("parse_rate"), "dev_prompts": report.get("n")}


@register_stage("rewrite_eval", needs=("sft", "rewrite_sft"))
def eval_stage(ctx: StageContext) -> dict[str, Any]:
    *converts, evaluate = eval_commands(ctx)
    for i, cmd in enumerate(converts):
        run_cli(ctx, cmd, tag=f"convert{i}")
    run_cli(ctx, evaluate, env=ray_env())
    results = json.loads((eval_results_dir(ctx.out_dir) / "results.json").read_text())
    return eval_summary(results.get("metrics", {}))


def eval_summary(metrics: dict[str, float]) -> dict[str, str]:
    """Per target and benchmark the safety (x100) with and without the rewriter beside the refuse-all baseline,
    the helpfulness where the benchmark has benign rows, and the share of rewrites that parsed:
    ``{"tiny-base/FigStep-Tiny": "safety 98.0 -> 100.0 (+2.0; refuse-all 100.0); rewrites parsed 100.0%"}``."""
    summary: dict[str, str] = {}
    pairs = sorted({tuple(k.split("/")[1:3]) for k in metrics if k.endswith("/original/n") and k.count("/") == 4})
    for target, bench in pairs:
        k = f"rewrite/{target}/{bench}"

        def pct(key: str) -> str:
            return f"{100 * metrics[key]:.1f}" if key in metrics else "-"

        parts = []
        for m in ("safety", "helpfulness"):
            if f"{k}/original/{m}" in metrics:
                parts.append(f"{m} {pct(f'{k}/original/{m}')} -> {pct(f'{k}/rewritten/{m}')} "
                             f"({100 * metrics.get(f'{k}/delta/{m}', 0.0):+.1f}; refuse-all {pct(f'{k}/refuse_all/{m}')})")
        parts.append(f"rewrites parsed {pct(f'rewrite/{bench}/rewrite_format_ok')}%")
        summary[f"{target}/{bench}"] = "; ".join(parts)
    return summary
