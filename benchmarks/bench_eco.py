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
    from guardrl.prompts import build_verl_prompt

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


def warm_start(model_dir: Path, out_dir: Path, rows: list[dict[str, Any]], steps: int, seed: int = 0) -> Path:
    """The shared R-SFT start: the output format, random labels, 1-10 reasoning sentences."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from guardrl.parse import Verdict, format_verdict

    torch.manual_seed(seed)
    rng = random.Random(seed)
    processor = AutoProcessor.from_pretrained(model_dir)
    tok = processor.tokenizer
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    examples = []
    for row in rows:
        prompt = tok.apply_chat_template(list(row["prompt"]), add_generation_prompt=True, tokenize=False)
        for _ in range(4):
            reasoning = " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 10)))
            label = rng.choice(("harmful", "unharmful"))
            target = format_verdict(Verdict(request=label, response=None, reasoning=reasoning, format_ok=True))
            p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            t_ids = tok(target + "<|im_end|>", add_special_tokens=False)["input_ids"]
            examples.append((p_ids + t_ids, [-100] * len(p_ids) + t_ids))
    rng.shuffle(examples)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    batch = 8
    for step in range(steps):
        chunk = [examples[(step * batch + j) % len(examples)] for j in range(batch)]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((batch, width), tok.pad_token_id)
        labels = torch.full((batch, width), -100)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for r, (x, y) in enumerate(chunk):
            ids[r, : len(x)] = torch.tensor(x)
            labels[r, : len(y)] = torch.tensor(y)
            mask[r, : len(x)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def _metrics(path: Path) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        out.setdefault(int(rec["step"]), {}).update(rec["data"])
    return out


def _val_summary(dump: Path, tokenizer: Any) -> dict[str, float]:
    """Mean output tokens and request F1 (harmful positive) of one validation dump."""
    from guardrl.metrics import confusion
    from guardrl.parse import parse
    from guardrl.rewards import parse_ground_truth

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

    from guardrl.rewards import ECO_BETA
    from guardrl.tiny_model import build_tiny_model

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
