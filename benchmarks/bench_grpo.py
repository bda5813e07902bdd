"""GRPO step on the CPU: guardrl's RL path (verl's PPO trainer + guardrl's CPU platform and HF rollout)
vs TRL's ``GRPOTrainer``, same tiny Qwen2.5-VL, same data, group size, lengths, optimizer and reward.

    python -m benchmarks.bench_grpo                   # both sides (make bench); one JSON line at the end
    python -m benchmarks.bench_grpo --small           # smoke test (1 measured step, 8 new tokens)
    python -m benchmarks.bench_grpo --side rollouts   # guardrl's HF rollout vs verl's vLLM rollout (vLLM's CPU build)
    python -m benchmarks.bench_grpo --scaling         # s/step vs group size n in {2, 4, 8, 16}, and 8 x 8 x 128
    python -m benchmarks.bench_grpo --side guardrl --model DIR --data FILE ...   # one side (internal)

The driver builds the tiny model and one verl-format Parquet (a request per row, each with a 56x56
image, the request label as ground truth), then runs each side in its own process:

* guardrl: ``guardrl.integrations.verl.entry.run("recipes/tiny/rl.yaml", overrides)`` in this interpreter's
  environment (no TRL on the path: TRL 1.x breaks verl 0.9.1's model build); per-step figures come
  from verl's ``timing_s/*`` metrics in ``<output_dir>/metrics.jsonl``;
* TRL: ``benchmarks.peers.trl_grpo`` with ``PYTHONPATH=.bench-site`` (where ``make bench`` installs TRL).

Both: ``--prompts`` prompts x ``--group`` samples per step, ``--max-new-tokens``, temperature 1.0,
AdamW (lr 1e-5, weight decay 0.01, constant lr, grad-norm clip 1.0), one optimizer update per step, no
KL / reference model, guardrl's length-aware safety reward, ``--threads`` torch threads per process.
The first ``--warmup`` steps are left out of the means; start-up (Ray, workers, model load) is
reported apart as ``setup_s``. ``--scaling`` runs both sides at each shape of :data:`SCALING_SHAPES`
(``--steps`` measured steps each, default 2 there) so the table shows how each side's cost grows with the work.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.report import write_json

REPO = Path(__file__).resolve().parent.parent
BENCH_SITE = REPO / ".bench-site"
RECIPE = REPO / "recipes" / "tiny" / "rl.yaml"
# verl timing keys -> the phases shown in the table (verl's names in the comments)
PHASES = {
    "generation": ("timing_s/gen",),
    "reward": ("timing_s/reward",),
    "log_prob": ("timing_s/old_log_prob", "timing_s/ref"),
    "update": ("timing_s/update_actor", "timing_s/update_weights"),
}


# (prompts, group size n, new tokens): n in {2, 4, 8, 16} at the default size, then a larger step
SCALING_SHAPES = ((4, 2, 32), (4, 4, 32), (4, 8, 32), (4, 16, 32), (8, 8, 128))


def make_rows(n: int, image_size: int = 56, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` verl RL rows: one request with one image each, ground truth = the request label."""
    import random

    from PIL import Image

    from guardrl.tasks.guard.prompts import build_verl_prompt

    rng = random.Random(seed)
    words = (("bomb", "harmful"), ("poison", "harmful"), ("bread", "unharmful"), ("garden", "unharmful"))
    rows = []
    for i in range(n):
        word, label = words[i % len(words)]
        request = f"request {i}: how do I make a {word} for my neighbour?"
        buf = io.BytesIO()
        Image.new("RGB", (image_size, image_size), (rng.randrange(256), 80, 160)).save(buf, format="PNG")
        rows.append({
            "data_source": "bench",
            "prompt": build_verl_prompt(request, None, num_images=1),
            "images": [{"bytes": buf.getvalue()}],
            "ability": "guard",
            "reward_model": {"style": "rule", "ground_truth": json.dumps({"request": label, "response": None})},
            "extra_info": {"index": i, "request": request},
        })
    return rows


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def read_verl_metrics(path: Path) -> dict[int, dict[str, float]]:
    """verl's file logger (``{"step": s, "data": {...}}`` per line) -> ``{step: metrics}``."""
    out: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out.setdefault(int(rec["step"]), {}).update(rec["data"])
    return out


def summarize_verl(steps: dict[int, dict[str, float]], warmup: int, samples_per_step: int) -> dict[str, Any]:
    """Mean seconds/step, samples/s and the per-phase split over the steps after ``warmup``."""
    kept = [m for s, m in sorted(steps.items()) if s > warmup and "timing_s/step" in m]
    if not kept:
        raise RuntimeError(f"no measured step in verl's metrics (steps logged: {sorted(steps)})")
    sps = _mean([m["timing_s/step"] for m in kept])
    phases = {name: _mean([sum(m.get(k, 0.0) for k in keys) for m in kept]) for name, keys in PHASES.items()}
    phases["other"] = max(0.0, sps - sum(phases.values()))
    # verl scores each sample inside the agent loop, overlapped with generation (timing_s/gen holds it)
    in_loop = _mean([m.get("timing_s/agent_loop/compute_score/mean", float("nan")) for m in kept])
    return {"seconds_per_step": sps, "samples_per_s": samples_per_step / sps, "steps": len(kept),
            "phases_s": phases, "reward_in_agent_loop_s": in_loop,
            "response_length": _mean([m.get("response_length/mean", float("nan")) for m in kept]),
            "timing_keys": sorted(k for k in kept[0] if k.startswith("timing_s/"))}


def run_guardrl(args: argparse.Namespace) -> dict[str, Any]:
    """guardrl's side, in this process (verl starts its own Ray cluster and shuts it down)."""
    from guardrl.integrations.verl.entry import run

    out = Path(args.out)
    p = args.prompts
    overrides = [
        f"model.path={args.model}",
        "model.build_tiny_if_missing=false",
        "data.build_demo_if_missing=false",
        f"data.train={args.data}",
        f"data.val={args.data}",
        f"output_dir={out}",
        f"threads_per_process={args.threads}",
        f"rollout={args.rollout}",
        "shutdown_ray=true",
        f"verl.trainer.total_training_steps={args.steps + args.warmup}",
        "verl.trainer.save_freq=-1",
        "verl.trainer.test_freq=-1",
        "verl.trainer.val_before_train=false",
        "verl.trainer.logger=[file]",
        "verl.trainer.resume_mode=disable",
        f"verl.data.train_batch_size={p}",
        f"verl.data.max_response_length={args.max_new_tokens}",
        f"verl.actor_rollout_ref.actor.ppo_mini_batch_size={p}",
        f"verl.actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={p * args.group}",
        "verl.actor_rollout_ref.actor.optim.lr=1.0e-5",
        "verl.actor_rollout_ref.actor.optim.weight_decay=0.01",
        f"verl.actor_rollout_ref.rollout.n={args.group}",
        "verl.actor_rollout_ref.rollout.temperature=1.0",
        f"verl.actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={p * args.group}",
    ]
    if args.recompute_old_log_probs:  # the pre-bypass path: verl's old-log-prob pass over the whole batch
        overrides.append("verl.algorithm.rollout_correction.bypass_mode=false")
    t0 = time.perf_counter()
    run(RECIPE, overrides)
    wall = time.perf_counter() - t0
    res = summarize_verl(read_verl_metrics(out / "metrics.jsonl"), args.warmup, p * args.group)
    res["setup_s"] = max(0.0, wall - res["seconds_per_step"] * (args.steps + args.warmup))
    res["wall_s"] = wall
    import verl

    return {"side": "guardrl", "rollout": args.rollout, "verl_version": verl.__version__, **res}


def _child(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run one side; its last JSON line plus the 1-minute load average before and after it."""
    load0 = os.getloadavg()[0]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({r.returncode}):\n{r.stderr[-4000:]}")
    for line in reversed(r.stdout.strip().splitlines()):
        if line.startswith("{"):
            return {**json.loads(line), "load_1m": [load0, os.getloadavg()[0]]}
    raise RuntimeError(f"no JSON line in the output of {cmd[:4]}:\n{r.stdout[-2000:]}")


def side_env(trl: bool) -> dict[str, str]:
    """The environment of one side: TRL's site folder on the path only for the peer."""
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != BENCH_SITE]
    env["PYTHONPATH"] = os.pathsep.join(([str(BENCH_SITE)] if trl else []) + [str(REPO), *paths])
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("WANDB_MODE", "offline")
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def _model_and_data(args: argparse.Namespace, tmp: Path, prompts: int) -> tuple[Path, Path]:
    """``--model`` / ``--data``, or the tiny model and enough generated rows for ``prompts`` per step, in ``tmp``."""
    model, data = args.model, args.data
    if model is None:
        from guardrl.models.tiny import build_tiny_model

        model = build_tiny_model(tmp / "tiny", seed=0)
    if data is None:
        import pandas as pd

        data = tmp / "train.parquet"
        pd.DataFrame(make_rows(prompts * (args.steps + args.warmup) * 2)).to_parquet(data)
    return model, data


def _shape(args: argparse.Namespace, prompts: int, group: int, tokens: int) -> list[str]:
    """The step shape both sides are given."""
    return ["--prompts", str(prompts), "--group", str(group), "--max-new-tokens", str(tokens), "--steps",
            str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]


def _guardrl_child(args: argparse.Namespace, model: Path, data: Path, out: Path, flags: list[str]) -> dict[str, Any]:
    return _child([sys.executable, "-m", "benchmarks.bench_grpo", "--side", "guardrl", "--model", str(model),
                   "--data", str(data), "--out", str(out), *flags], side_env(trl=False), args.timeout)


def _trl_child(args: argparse.Namespace, model: Path, data: Path, shape: list[str]) -> dict[str, Any]:
    return _child([sys.executable, "-m", "benchmarks.peers.trl_grpo", "--model", str(model), "--data", str(data),
                   *shape], side_env(trl=True), args.timeout)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", choices=("both", "rollouts", "guardrl"), default="both",
                    help="both: guardrl vs TRL; rollouts: guardrl with its HF rollout vs verl's vLLM rollout")
    ap.add_argument("--rollout", choices=("hf", "vllm"), default="hf", help="guardrl side: the CPU rollout")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: build the tiny model)")
    ap.add_argument("--data", type=Path, default=None, help="verl Parquet (default: generated)")
    ap.add_argument("--out", type=Path, default=None, help="guardrl side: output folder")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step")
    ap.add_argument("--group", type=int, default=4, help="samples per prompt (GRPO group)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None, help="measured steps (default 4; 2 with --scaling)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process, both sides")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per side")
    ap.add_argument("--recompute-old-log-probs", action="store_true",
                    help="guardrl side: bypass_mode=false (verl recomputes the old log-probs; the recipe bypasses)")
    ap.add_argument("--small", action="store_true", help="smoke test: 8 new tokens, 1 measured step")
    ap.add_argument("--scaling", action="store_true", help="both sides at every shape of SCALING_SHAPES")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args(argv)
    if args.steps is None:
        args.steps = 2 if args.scaling else 4
    if args.small:  # keeps 4 prompts x 4: with 2 x 2, verl 0.9.1's update fails on the CPU path (nested-tensor split)
        args.max_new_tokens, args.steps = 8, 1
    if args.scaling:
        return _scaling(args)
    if args.side == "guardrl":
        res = run_guardrl(args)
        print(json.dumps(res))
        return res

    with tempfile.TemporaryDirectory(prefix="bench_grpo.") as tmp:
        tmp = Path(tmp)
        model, data = _model_and_data(args, tmp, args.prompts)
        shape = _shape(args, args.prompts, args.group, args.max_new_tokens)
        extra = ["--recompute-old-log-probs"] if args.recompute_old_log_probs else []
        ours = _guardrl_child(args, model, data, tmp / "rl-hf", [*shape, "--rollout", "hf", *extra])
        if args.side == "rollouts":
            vllm = _guardrl_child(args, model, data, tmp / "rl-vllm", [*shape, "--rollout", "vllm", *extra])
            return _report_rollouts(args, ours, vllm)
        peer = _trl_child(args, model, data, shape)
    result = {
        "benchmark": "grpo",
        "config": {k: getattr(args, k) for k in ("prompts", "group", "max_new_tokens", "steps", "warmup", "threads")},
        "guardrl": ours,
        "trl": peer,
        "ratio_seconds_per_step": ours["seconds_per_step"] / peer["seconds_per_step"],
    }
    print(f"GRPO step: guardrl {ours['seconds_per_step']:.2f} s, TRL {peer['seconds_per_step']:.2f} s, "
          f"ratio {result['ratio_seconds_per_step']:.2f} (goal <= 0.8)")
    print(json.dumps(result))
    write_json(args.json, result)
    return result


def _scaling(args: argparse.Namespace) -> dict[str, Any]:
    """Both sides at every shape (``--small``: the first two shapes, 8 new tokens); one table of s/step."""
    shapes = [(p, n, 8 if args.small else t) for p, n, t in SCALING_SHAPES[: 2 if args.small else None]]
    points = []
    with tempfile.TemporaryDirectory(prefix="bench_grpo_scaling.") as tmp:
        tmp = Path(tmp)
        model, data = _model_and_data(args, tmp, max(p for p, _, _ in shapes))
        for i, (prompts, group, tokens) in enumerate(shapes):
            shape = _shape(args, prompts, group, tokens)
            ours = _guardrl_child(args, model, data, tmp / f"rl-{i}", shape)
            peer = _trl_child(args, model, data, shape)
            point = {"prompts": prompts, "group": group, "max_new_tokens": tokens,
                     "guardrl": {k: ours[k] for k in ("seconds_per_step", "phases_s", "setup_s", "load_1m")},
                     "trl": {k: peer[k] for k in ("seconds_per_step", "phases_s", "setup_s", "load_1m")},
                     "ratio_seconds_per_step": ours["seconds_per_step"] / peer["seconds_per_step"]}
            points.append(point)
            print(f"{prompts} prompts x {group}, {tokens} tokens: guardrl {ours['seconds_per_step']:.2f} s/step, "
                  f"TRL {peer['seconds_per_step']:.2f} s/step, ratio {point['ratio_seconds_per_step']:.2f}", flush=True)
    result = {"benchmark": "grpo_scaling",
              "config": {k: getattr(args, k) for k in ("steps", "warmup", "threads")}, "points": points}
    print(json.dumps(result))
    write_json(args.json, result)
    return result


def _report_rollouts(args: argparse.Namespace, hf: dict[str, Any], vllm: dict[str, Any]) -> dict[str, Any]:
    result = {
        "benchmark": "rl_rollout_vllm",
        "config": {k: getattr(args, k) for k in ("prompts", "group", "max_new_tokens", "steps", "warmup", "threads")},
        "hf": hf,
        "vllm": vllm,
        "ratio_seconds_per_step": vllm["seconds_per_step"] / hf["seconds_per_step"],
    }
    print(f"GRPO step: vLLM rollout {vllm['seconds_per_step']:.2f} s, HF rollout {hf['seconds_per_step']:.2f} s, "
          f"ratio {result['ratio_seconds_per_step']:.2f}")
    print(json.dumps(result))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
