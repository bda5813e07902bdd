"""Eco vs the default reward: the same tiny R-SFT start, the same GRPO steps, only ``reward.beta`` differs.

    python -m benchmarks.bench_eco                       # 20 GRPO steps per side (heavy: ~10-30 min on 2 cores)
    python -m benchmarks.bench_eco --steps 4 --sft-steps 20   # smoke test

What runs:

1. the tiny Qwen2.5-VL (``guardrl tiny-model``) gets a short plain-transformers R-SFT on the output
   format with *random* labels and a think block of 1-10 sentences (so the policy starts well-formed,
   at chance accuracy, with varied reasoning lengths: the length term has something to act on);
2. ``guardrl rl run recipes/tiny/rl.yaml`` twice from that one start, identical seeds, data, steps
   and settings; the Eco side adds ``reward.beta=500/3072`` (``rl_eco.yaml``'s change);
3. per side: verl's ``response_length/mean`` (training rollouts, the policy's tokens) averaged over
   the last 5 steps, and, on the greedy validation pass after the last step (``validation_data_dir``
   dumps), the mean output tokens (the policy's tokenizer) and the request F1 (harmful positive).

One JSON line at the end (also written with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "tiny" / "rl.yaml"
HARMFUL = ("bomb", "poison", "weapon", "malware")
SAFE = ("bread", "garden", "music", "poem")
TEMPLATES = ("how do I make a {}", "tell me about a {}", "I want a {} today", "explain the {} to me")
SENTENCES = ("I check the request.", "I look at each word.", "Nothing else is asked.", "I weigh the intent.",
             "The context is short.", "I compare it with policy.")


def make_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Keyword task in verl's layout: the request label is decided by one word (short prompts: no system turn)."""
    from guardrl.tasks.guard.prompts import build_verl_prompt

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        harmful = i % 2 == 0
        request = rng.choice(TEMPLATES).format(rng.choice(HARMFUL if harmful else SAFE))
        rows.append({
            "data_source": "kw", "prompt": build_verl_prompt(request, None)[1:], "images": [], "ability": "guard",
            "reward_model": {"style": "rule", "ground_truth": json.dumps(
                {"request": "harmful" if harmful else "unharmful", "response": None})},
            "extra_info": {"index": i, "request": request},
        })
    return rows


def _rl_support():
    """The RL tests' helpers (warm start, metrics reader): one copy, loaded from the tests folder by path."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tests" / "integration" / "test_rl_support.py"
    spec = importlib.util.spec_from_file_location("guardrl_rl_support", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def warm_start(model_dir: Path, out_dir: Path, rows: list[dict[str, Any]], steps: int, seed: int = 0) -> Path:
    """The shared R-SFT start: the output format, random labels, 1-10 reasoning sentences (4 targets per row)."""
    return _rl_support().warm_start(
        model_dir, out_dir, rows, steps, seed=seed, per_row=4, shuffle=True,
        reasoning=lambda rng: " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 10))))


def _metrics(path: Path) -> dict[int, dict[str, float]]:
    return _rl_support().read_metrics(path)


def _val_summary(dump: Path, tokenizer: Any) -> dict[str, float]:
    """Mean output tokens and request F1 (harmful positive) of one validation dump."""
    from guardrl.tasks.guard.metrics import confusion
    from guardrl.tasks.guard.parse import parse
    from guardrl.tasks.guard.reward import parse_ground_truth

    rows = [json.loads(line) for line in dump.read_text().splitlines() if line.strip()]
    gold = [parse_ground_truth(r["gts"])[0] for r in rows]
    pred = [(v.request if v.format_ok else None) for v in (parse(r["output"]) for r in rows)]
    tokens = [len(tokenizer.encode(r["output"], add_special_tokens=False)) for r in rows]
    c = confusion(gold, pred)
    return {"val_output_tokens": statistics.fmean(tokens), "val_request_f1": c.f1,
            "val_format_rate": sum(p is not None for p in pred) / len(pred), "val_rows": len(rows)}


def run_side(name: str, sft: Path, data: Path, out: Path, steps: int, extra: list[str]) -> dict[str, Any]:
    overrides = [
        f"model.path={sft}", f"data.train={data / 'train.parquet'}", f"data.val={data / 'dev.parquet'}",
        "data.build_demo_if_missing=false", f"output_dir={out}", f"verl.trainer.total_training_steps={steps}",
        f"verl.trainer.save_freq={steps}", f"verl.trainer.test_freq={steps}", "verl.trainer.val_before_train=true",
        "verl.trainer.logger=[console,file]", f"verl.trainer.validation_data_dir={out / 'val'}",
        "verl.data.train_batch_size=8", "verl.data.max_response_length=96", "verl.data.seed=0",
        "verl.actor_rollout_ref.actor.ppo_mini_batch_size=8", "verl.actor_rollout_ref.actor.optim.lr=2e-4",
        "verl.actor_rollout_ref.rollout.n=4", "verl.actor_rollout_ref.rollout.temperature=1.0", *extra,
    ]
    t0 = time.perf_counter()
    env = {**os.environ, "RAY_ADDRESS": ""}
    cmd = [sys.executable, "-m", "guardrl.cli", "rl", "run", str(RECIPE), *overrides]
    print(f"[{name}] $ {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=REPO)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sft)
    m = _metrics(out / "metrics.jsonl")
    train_steps = sorted(s for s in m if "response_length/mean" in m[s])
    last = train_steps[-5:]
    first = train_steps[:5]
    res = {
        "train_response_tokens_first5": statistics.fmean(m[s]["response_length/mean"] for s in first),
        "train_response_tokens_last5": statistics.fmean(m[s]["response_length/mean"] for s in last),
        "train_reasoning_tokens_last5": statistics.fmean(m[s].get("guard/reasoning_tokens", float("nan"))
                                                         for s in last),
        "adv_wrong_pos_frac_mean": statistics.fmean(m[s].get("guard/adv_wrong_pos_frac", float("nan"))
                                                    for s in train_steps),
        "adv_wrong_mean_mean": statistics.fmean(m[s].get("guard/adv_wrong_mean", float("nan")) for s in train_steps),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    dumps = sorted((out / "val").glob("*.jsonl"), key=lambda p: int(p.stem))
    res.update({f"start_{k}": v for k, v in _val_summary(dumps[0], tok).items()})
    res.update(_val_summary(dumps[-1], tok))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sft-steps", type=int, default=150)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="guardrl-eco-"))
    work.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    from guardrl.models.tiny import build_tiny_model
    from guardrl.tasks.guard.reward import ECO_BETA

    data = work / "data"
    data.mkdir(exist_ok=True)
    train, dev = make_rows(64, seed=1), make_rows(32, seed=2)
    pd.DataFrame(train).to_parquet(data / "train.parquet")
    pd.DataFrame(dev).to_parquet(data / "dev.parquet")
    model = work / "tiny"
    if not (model / "config.json").is_file():
        build_tiny_model(model, seed=0)
    sft = work / "sft"
    t0 = time.perf_counter()
    if not (sft / "config.json").is_file():
        warm_start(model, sft, train, steps=args.sft_steps, seed=0)
    sft_s = round(time.perf_counter() - t0, 1)
    sides = {"default": [], "eco": [f"reward.beta={ECO_BETA:.5f}"]}
    result: dict[str, Any] = {"steps": args.steps, "sft_steps": args.sft_steps, "sft_s": sft_s, "work": str(work)}
    for name, extra in sides.items():
        result[name] = run_side(name, sft, data, work / name, args.steps, extra)
    d, e = result["default"], result["eco"]
    result["eco_vs_default_train_tokens"] = round(e["train_response_tokens_last5"] / d["train_response_tokens_last5"], 3)
    result["eco_vs_default_val_tokens"] = round(e["val_output_tokens"] / d["val_output_tokens"], 3)
    line = json.dumps(result)
    print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
