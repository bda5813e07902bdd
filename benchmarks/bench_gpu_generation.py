"""GPU generation: HF engine vs vLLM tokens/s on a random-initialised Qwen2.5-VL-3B (``make bench-gpu``).

    python -m benchmarks.bench_gpu_generation            # 96 prompts, 128 new tokens
    python -m benchmarks.bench_gpu_generation --small    # 8 prompts, 16 new tokens

The model is built as in ``benchmarks.bench_sft --gpu`` (the 3B shape, random weights, bf16, the tiny
tokenizer); prompts are ``benchmarks.bench_generation.make_inputs``. Both engines come from
``guardrl.generation.make_engine``; where vLLM is not installed its figure says so (no estimate).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.report import write_json


def _measure(engine: Any, inputs: list, params: Any) -> dict[str, float]:
    import torch

    engine.generate(inputs[:2], type(params)(max_new_tokens=4))  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = engine.generate(inputs, params)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    tokens = sum(c.num_tokens for comps in res for c in comps)
    return {"seconds": dt, "tokens": tokens, "tokens_per_s": tokens / dt, "samples_per_s": len(inputs) / dt}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=96)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=96)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.small:
        args.prompts, args.max_new_tokens, args.batch_size = 8, 16, 8

    import torch

    from benchmarks.bench_generation import make_inputs
    from benchmarks.bench_sft import build_random_model
    from guardrl.generation import make_engine
    from guardrl.generation.base import SamplingParams
    from guardrl.models.tiny import build_tiny_model

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU")
    device = torch.cuda.get_device_name(0)
    params = SamplingParams(n=1, temperature=1.0, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=0)
    with tempfile.TemporaryDirectory(prefix="bench_gpu_gen.") as tmp:
        model = build_random_model("3b", Path(tmp) / "random-3b", build_tiny_model(Path(tmp) / "tiny", seed=0))
        inputs = make_inputs(args.prompts)
        hf = make_engine(model, engine="hf", device="cuda", dtype="bfloat16", batch_size=args.batch_size)
        result: dict[str, Any] = {"device": device, "prompts": args.prompts, "max_new_tokens": args.max_new_tokens,
                                  "hf": _measure(hf, inputs, params)}
        del hf
        torch.cuda.empty_cache()
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            result["vllm"] = {"not_measured": f"vLLM not installed ({exc.name}): make install-gpu"}
        else:
            engine = make_engine(model, engine="vllm", gpu_memory_utilization=0.8, max_model_len=4096)
            result["vllm"] = _measure(engine, inputs, params)
    print(json.dumps(result))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
