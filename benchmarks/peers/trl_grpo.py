"""Peer: TRL's GRPOTrainer on the tiny Qwen2.5-VL, CPU, same shapes as guardrl's GRPO benchmark.

Run with TRL on the path (``PYTHONPATH=.bench-site``, never in the environment that runs verl);
``benchmarks.bench_grpo`` runs it. Reads the same verl-format Parquet as guardrl's side (prompt text,
one image and the request label per row), scores with guardrl's length-aware safety reward, and
prints one JSON line: ``{"side": "trl", "seconds_per_step": ..., "samples_per_s": ..., "phases_s": ...}``.

Phases: ``generation`` (``_generate``), ``reward`` (``_calculate_rewards``), ``log_prob`` (the rest of
``_generate_and_score_completions``: tokenisation, old / reference log-probs when TRL needs them),
``update`` (the rest of the step: forward + backward + optimizer).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections import defaultdict


def _timed(obj, name: str, acc: dict[str, float]) -> None:
    fn = getattr(obj, name)

    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            acc[name] += time.perf_counter() - t0

    setattr(obj, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="verl-format Parquet written by benchmarks.bench_grpo")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step")
    ap.add_argument("--group", type=int, default=4, help="generations per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import pandas as pd
    import torch
    import trl
    from datasets import Dataset
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from guardrl.tasks.guard.prompts import build_messages
    from guardrl.tasks.guard.reward import RewardConfig, compute_reward

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for r in pd.read_parquet(args.data).to_dict("records"):
        gt = json.loads(r["reward_model"]["ground_truth"])
        img = Image.open(io.BytesIO(r["images"][0]["bytes"])).convert("RGB")
        rows.append({"prompt": build_messages(r["extra_info"]["request"], None, 1), "image": img,
                     "gold_request": gt["request"]})
    ds = Dataset.from_list(rows)
    reward_cfg = RewardConfig(max_length=args.max_new_tokens)

    def reward(completions, gold_request, **_):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return [compute_reward(t, y, None, reward_cfg).score for t, y in zip(texts, gold_request, strict=True)]

    processor = AutoProcessor.from_pretrained(args.model)
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32, attn_implementation="sdpa")
    cfg = GRPOConfig(
        output_dir="/tmp/trl-grpo-bench",
        per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group,
        max_completion_length=args.max_new_tokens,
        learning_rate=1e-5,
        weight_decay=0.01,
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        beta=0.0,
        temperature=1.0,
        top_p=1.0,
        max_steps=args.steps + args.warmup,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
    )
    times: list[float] = []
    phases: list[dict[str, float]] = []
    acc: dict[str, float] = defaultdict(float)

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            acc.clear()
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)
            phases.append(dict(acc))

    t_setup = time.perf_counter()
    trainer = GRPOTrainer(model=model, args=cfg, reward_funcs=reward, train_dataset=ds, processing_class=processor,
                          callbacks=[Timer()])
    for name in ("_generate", "_calculate_rewards", "_generate_and_score_completions"):
        _timed(trainer, name, acc)
    trainer.train()
    wall = time.perf_counter() - t_setup
    measured, ph = times[args.warmup:], phases[args.warmup:]
    sps = sum(measured) / len(measured)

    def mean(f):
        return sum(f(p, t) for p, t in zip(ph, measured, strict=True)) / len(ph)

    split = {
        "generation": mean(lambda p, t: p.get("_generate", 0.0)),
        "reward": mean(lambda p, t: p.get("_calculate_rewards", 0.0)),
        "log_prob": mean(lambda p, t: p.get("_generate_and_score_completions", 0.0) - p.get("_generate", 0.0)
                         - p.get("_calculate_rewards", 0.0)),
        "update": mean(lambda p, t: t - p.get("_generate_and_score_completions", 0.0)),
    }
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history[args.warmup:]
               if "completions/mean_length" in h]
    print(json.dumps({"side": "trl", "trl_version": trl.__version__, "seconds_per_step": sps,
                      "samples_per_s": args.prompts * args.group / sps, "steps": len(measured), "phases_s": split,
                      "response_length": sum(lengths) / len(lengths) if lengths else float("nan"),
                      "setup_s": max(0.0, wall - sum(times)), "wall_s": wall}))


if __name__ == "__main__":
    main()
