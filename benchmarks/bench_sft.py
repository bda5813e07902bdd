"""SFT step: guardrl's R-SFT trainer (``guardrl.stages.sft``) vs TRL's ``SFTTrainer``, same model and batch.

    python -m benchmarks.bench_sft                    # CPU, tiny Qwen2.5-VL (make bench); JSON line at the end
    python -m benchmarks.bench_sft --small            # smoke test
    python -m benchmarks.bench_sft --gpu              # GPU: random-init Qwen2.5-VL-3B, bf16 (make bench-gpu)

The batch comes from :mod:`benchmarks.sft_batch`: ``--batch`` identical-length samples (a request, one
``--image-size`` image, a reasoning target of ``--seq`` words), so both trainers see the same tokens
per step and no padding. Each side runs in its own process:

* guardrl: ``guardrl.stages.sft.train(recipe, overrides)`` in this environment with ``resources.launcher=local``
  (one rank, FSDP2, the recipe's activation checkpointing), one optimizer step per batch
  (``global_batch_size = micro_batch_size = --batch``), ``log_every=1``: seconds/step is the step's
  tokens over the ``tokens_per_s`` that ``metrics.jsonl`` logs for it;
* TRL: ``benchmarks.peers.trl_sft`` with ``PYTHONPATH=.bench-site``: same batch, lr, AdamW, grad-norm
  clip, gradient checkpointing, ``--threads`` torch threads (CPU).

GPU (``--gpu``): the model is Qwen2.5-VL-3B's shape (``guardrl.models.tiny.reference_config("3b")``),
randomly initialised and saved once in bf16 with the tiny model's tokenizer (token ids stay in range),
the recipe ``recipes/qwen2_5_vl_3b/sft.yaml`` with its micro batch on one GPU; MFU = 6 N tokens/s over
the detected GPU's dense bf16 peak (N = parameters; attention FLOPs left out, so MFU is a lower bound).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_grpo import REPO, _child, side_env
from benchmarks.report import write_json

CPU_RECIPE = REPO / "recipes" / "tiny" / "sft.yaml"
GPU_RECIPE = REPO / "recipes" / "qwen2_5_vl_3b" / "sft.yaml"
# dense bf16 peak FLOP/s (no sparsity), by a substring of torch.cuda.get_device_name()
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12,
             "A10G": 125e12, "L4": 121e12, "RTX 4090": 165e12}


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU named like ``torch.cuda.get_device_name()``; None when unknown."""
    for key, value in PEAK_BF16.items():  # dict order: "H100 PCIe" before "H100"
        if key in device_name:
            return value
    return None


def build_random_model(size: str, out_dir: Path, tokenizer_dir: Path) -> Path:
    """Save a randomly initialised Qwen2.5-VL of ``size`` (bf16) with the processor of ``tokenizer_dir``;
    the config's special-token ids are set to that tokenizer's."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from guardrl.models.tiny import reference_config

    processor = AutoProcessor.from_pretrained(tokenizer_dir)
    tok = processor.tokenizer
    cfg = reference_config(size)
    ids = {k: tok.convert_tokens_to_ids(t) for k, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    for k, v in ids.items():
        setattr(cfg, k, v)
    tc = cfg.text_config
    tc.bos_token_id = tc.pad_token_id = tok.convert_tokens_to_ids("<|endoftext|>")
    tc.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2_5_VLForConditionalGeneration(cfg).to(torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the benchmark's children need the GPU memory
    return out_dir


def run_guardrl(args: argparse.Namespace) -> dict[str, Any]:
    """guardrl's side in this process: train ``warmup + steps`` steps, read ``metrics.jsonl``."""
    from guardrl.stages.sft import train

    out = Path(args.out)
    overrides = [
        f"model.path={args.model}", "model.build_tiny_if_missing=false",
        f"data.path={args.data}", "data.train_split=null", "data.dev_split=null", "data.max_seq_len=8192",
        "data.num_workers=0", f"trainer.output_dir={out}", f"trainer.max_steps={args.steps + args.warmup}",
        f"trainer.global_batch_size={args.batch}", f"trainer.micro_batch_size={args.batch}", "trainer.log_every=1",
        "trainer.epochs=1", "checkpoint.every_steps=0", "checkpoint.save_hf=false", "checkpoint.resume=never",
        "resources.launcher=local", "resources.num_workers=1", "logging.wandb=false", "logging.progress_bar=false",
        f"resources.use_gpu={'true' if args.gpu else 'false'}",
    ]
    if not args.gpu:
        overrides.append(f"resources.cpus_per_worker={args.threads}")
    t0 = time.perf_counter()
    train(GPU_RECIPE if args.gpu else CPU_RECIPE, overrides)
    wall = time.perf_counter() - t0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    kept = [r for r in rows if r["step"] > args.warmup]
    tokens = args.batch * args.seq_tokens
    times = [tokens / r["tokens_per_s"] for r in kept]
    sps = sum(times) / len(times)
    return {"side": "guardrl", "seconds_per_step": sps, "samples_per_s": args.batch / sps, "tokens_per_s": tokens / sps,
            "tokens_per_step": tokens, "steps": len(kept), "wall_s": wall}


def sample_tokens(model: Path, row: dict[str, Any]) -> int:
    """Tokens of one sample as guardrl's SFT encoder builds it (prompt, image tokens, target)."""
    from transformers import AutoProcessor

    from guardrl.stages.sft.data import SFTEncoder

    return len(SFTEncoder(AutoProcessor.from_pretrained(model), 1 << 20)(row["sample"])["input_ids"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", choices=("both", "guardrl"), default="both")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: tiny, or random 3B with --gpu)")
    ap.add_argument("--data", type=Path, default=None, help="guardrl side: shard dir (internal)")
    ap.add_argument("--out", type=Path, default=None, help="guardrl side: output folder (internal)")
    ap.add_argument("--seq-tokens", type=int, default=0, help="guardrl side: tokens per sample (internal)")
    ap.add_argument("--batch", type=int, default=None, help="samples per step (default 8; GPU: the recipe's micro batch)")
    ap.add_argument("--seq", type=int, default=None, help="reasoning words per target (default 200; GPU 1200)")
    ap.add_argument("--image-size", type=int, default=None, help="pixels per side (default 112; GPU 448)")
    ap.add_argument("--steps", type=int, default=5, help="measured steps")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="CPU: torch threads, both sides")
    ap.add_argument("--gpu", action="store_true", help="random-init Qwen2.5-VL-3B on the GPU, bf16")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per side")
    ap.add_argument("--small", action="store_true", help="smoke test: batch 2, 32 words, 1 measured step")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args(argv)
    if args.small:
        args.batch, args.seq, args.image_size, args.steps = 2, 32, 56, 1
    args.batch = args.batch or (4 if args.gpu else 8)
    args.seq = args.seq or (1200 if args.gpu else 200)
    args.image_size = args.image_size or (448 if args.gpu else 112)
    if args.side == "guardrl":
        res = run_guardrl(args)
        print(json.dumps(res))
        return res

    from benchmarks.sft_batch import make_rows, write_shards

    device = "cpu"
    with tempfile.TemporaryDirectory(prefix="bench_sft.", dir=os.environ.get("GUARDRL_BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            from guardrl.models.tiny import build_tiny_model

            model = build_tiny_model(tmp / "tiny", seed=0)
            if args.gpu:
                model = build_random_model("3b", tmp / "random-3b", model)
        if args.gpu:
            import torch

            device = torch.cuda.get_device_name(0)
        rows = make_rows(args.batch * (args.steps + args.warmup), args.seq, args.image_size, tmp / "images")
        data = write_shards(rows, tmp / "shards")
        seq_tokens = sample_tokens(model, rows[0])
        shape = ["--batch", str(args.batch), "--seq", str(args.seq), "--image-size", str(args.image_size),
                 "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
        gpu = ["--gpu"] if args.gpu else []
        ours = _child([sys.executable, "-m", "benchmarks.bench_sft", "--side", "guardrl", "--model", str(model),
                       "--data", str(data), "--out", str(tmp / "sft"), "--seq-tokens", str(seq_tokens), *shape, *gpu],
                      side_env(trl=False), args.timeout)
        peer = _child([sys.executable, "-m", "benchmarks.peers.trl_sft", "--model", str(model), *shape, *gpu],
                      side_env(trl=True), args.timeout)
        n_params = _count_params(model)
    result = {
        "benchmark": "sft_gpu" if args.gpu else "sft",
        "device": device,
        "config": {k: getattr(args, k) for k in ("batch", "seq", "image_size", "steps", "warmup", "threads")},
        "tokens_per_sample": seq_tokens,
        "params": n_params,
        "guardrl": ours,
        "trl": peer,
        "ratio_tokens_per_s": ours["tokens_per_s"] / peer["tokens_per_s"],
    }
    if args.gpu:
        peak = peak_flops(device)
        for side in (ours, peer):
            side["mfu"] = 6 * n_params * side["tokens_per_s"] / peak if peak else None
        result["peak_flops"] = peak
    print(f"SFT step: guardrl {ours['tokens_per_s']:.0f} tokens/s, TRL {peer['tokens_per_s']:.0f} tokens/s, "
          f"ratio {result['ratio_tokens_per_s']:.2f} (higher is better)")
    print(json.dumps(result))
    write_json(args.json, result)
    return result


def _count_params(model: Path) -> int:
    import math

    from safetensors import safe_open

    n = 0
    for f in Path(model).glob("*.safetensors"):
        with safe_open(str(f), "pt") as fh:
            n += sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys())  # noqa: SIM118
    return n


if __name__ == "__main__":
    main()
