"""Reward throughput: score N synthetic completions on one core (goal: 100K in < 2 s).

    python -m benchmarks.bench_reward --n 100000        # the measurement (make bench)
    python -m benchmarks.bench_reward --n 200           # smoke test

Completions mix well-formed correct / wrong answers, with and without a response line,
reasoning of 20-400 words, and malformed outputs (about 10 %). Two paths are timed, each once
over all N: ``guardrl.tasks.guard.reward.compute_reward`` (labels already parsed) and the verl adapter
``guardrl.integrations.verl.reward.compute_score`` (JSON ground truth, what verl calls). Whitespace
token counting (the default). Prints CPU (process) time, the figure to compare with the goal on a
shared machine, and wall time; exits 1 when the adapter's CPU time, scaled to 100K, misses
``--budget-s``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from guardrl.tasks.guard.reward import RewardConfig, compute_reward

_WORDS = (
    "the", "user", "asks", "for", "instructions", "request", "harmful", "because", "it", "could",
    "cause", "injury", "response", "refuses", "image", "shows", "a", "weapon", "text", "overlay",
    "policy", "violation", "benign", "question", "about", "cooking", "safety", "context",
)


def make_cases(n: int, seed: int = 0) -> list[tuple[str, str | None, str | None]]:
    """``n`` (completion, gold_request, gold_response) triples, deterministic for ``seed``."""
    rng = random.Random(seed)
    labels = ("harmful", "unharmful")
    cases = []
    for _ in range(n):
        reasoning = " ".join(rng.choices(_WORDS, k=rng.randint(20, 400)))
        req = rng.choice(labels)
        resp = rng.choice((*labels, None))
        pred_req = req if rng.random() < 0.7 else rng.choice(labels)
        pred_resp = "None" if resp is None else (resp if rng.random() < 0.7 else rng.choice(labels))
        text = (
            f"<think>\n{reasoning}\n</think>\n<result>\nRequest: {pred_req}\nResponse: {pred_resp}\n</result>"
        )
        r = rng.random()
        if r < 0.05:
            text = text.replace("</result>", "")  # truncated
        elif r < 0.10:
            text = reasoning  # no tags at all
        cases.append((text, req, resp))
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--budget-s", type=float, default=2.0, help="goal for the adapter path at --n 100000")
    ap.add_argument("--json", default=None, help="also write the figures here (benchmarks.run_all)")
    args = ap.parse_args(argv)

    from guardrl.integrations.verl.reward import compute_score

    cases = make_cases(args.n)
    gts = [json.dumps({"request": q, "response": r}) for _, q, r in cases]
    cfg = RewardConfig()

    wall, cpu = time.perf_counter(), time.process_time()
    total = 0.0
    for text, q, r in cases:
        total += compute_reward(text, q, r, cfg).score
    pure = (time.perf_counter() - wall, time.process_time() - cpu)

    wall, cpu = time.perf_counter(), time.process_time()
    for (text, _, _), gt in zip(cases, gts, strict=True):
        compute_score("bench", text, gt)
    adapter = (time.perf_counter() - wall, time.process_time() - cpu)

    for name, (w, c) in (("rewards.compute_reward", pure), ("verl_ext.reward.compute_score", adapter)):
        print(f"{name:30s} n={args.n:>7d}  cpu {c:6.3f} s ({args.n / c:>9,.0f}/s)  wall {w:6.3f} s")
    scaled = adapter[1] * 100_000 / max(args.n, 1)
    print(f"adapter CPU time scaled to 100K: {scaled:.3f} s (goal < {args.budget_s} s); mean score {total / args.n:.3f}")
    if args.json:
        paths = {"pure": pure, "adapter": adapter}
        report = {name: {"cpu_s": c, "wall_s": w, "per_s_cpu": args.n / c} for name, (w, c) in paths.items()}
        report.update(n=args.n, adapter_cpu_s_per_100k=scaled, budget_s=args.budget_s)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if scaled < args.budget_s else 1


if __name__ == "__main__":
    sys.exit(main())
