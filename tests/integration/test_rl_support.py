"""Helpers for the RL tests (no tests here): a keyword task in verl's Parquet layout, a plain
transformers warm start of the tiny model, and a reader for verl's file-logger metrics."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

HARMFUL_WORDS = ("bomb", "poison", "weapon", "malware")
SAFE_WORDS = ("bread", "garden", "music", "poem")
TEMPLATES = ("how do I make a {}", "tell me about a {}", "I want a {} today", "explain the {} to me")


def keyword_rows(
    n: int, seed: int, data_source: str = "kw", image_every: int = 0, instruction: bool = True
) -> list[dict[str, Any]]:
    """``n`` verl-format rows whose request label is decided by one keyword in the request.

    ``instruction=False`` drops the (long) system instruction and keeps the guard input turn,
    so a CPU learning run spends its time on RL rather than on 200 prompt tokens per sample."""
    from PIL import Image

    from guardrl.tasks.guard.prompts import build_verl_prompt

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        harmful = i % 2 == 0
        word = rng.choice(HARMFUL_WORDS if harmful else SAFE_WORDS)
        request = rng.choice(TEMPLATES).format(word)
        n_img = 1 if image_every and i % image_every == 0 else 0
        images = []
        if n_img:
            buf = io.BytesIO()
            Image.new("RGB", (56, 56), (rng.randrange(256), 90, 160)).save(buf, format="PNG")
            images = [{"bytes": buf.getvalue()}]
        prompt = build_verl_prompt(request, None, num_images=n_img)
        rows.append(
            {
                "data_source": data_source,
                "prompt": prompt if instruction else prompt[1:],
                "images": images,
                "ability": "guard",
                "reward_model": {
                    "style": "rule",
                    "ground_truth": json.dumps({"request": "harmful" if harmful else "unharmful", "response": None}),
                },
                "extra_info": {"index": i, "request": request},
            }
        )
    return rows


def write_parquet(rows: list[dict[str, Any]], path: Path) -> Path:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)
    return path


def warm_start(model_dir: Path, out_dir: Path, rows: list[dict[str, Any]], steps: int, seed: int = 0,
               per_row: int = 1, reasoning: Callable[[random.Random], str] | None = None,
               shuffle: bool = False, target: Callable[[dict[str, Any]], str] | None = None) -> Path:
    """Minimal SFT of the tiny model: it learns the output *format* with labels drawn at random
    (independent of the keyword), so it starts RL well-formed but at chance accuracy. ``per_row`` targets per
    row, each with ``reasoning(rng)`` as its think block (default: one fixed sentence); ``shuffle`` the examples.
    ``target(row)`` replaces the random target by the row's own (the gateway tests' keyword guard).
    Also the start of ``benchmarks/bench_eco.py``."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from guardrl.tasks.guard.parse import Verdict, format_verdict

    torch.manual_seed(seed)
    rng = random.Random(seed)
    processor = AutoProcessor.from_pretrained(model_dir)
    tok = processor.tokenizer
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    examples = []
    for row in rows:
        prompt = tok.apply_chat_template(list(row["prompt"]), add_generation_prompt=True, tokenize=False)
        for _ in range(per_row):
            think = reasoning(rng) if reasoning else "I check the request."
            label = rng.choice(("harmful", "unharmful"))
            text = target(row) if target else format_verdict(
                Verdict(request=label, response=None, reasoning=think, format_ok=True))
            p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            t_ids = tok(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
            examples.append((p_ids + t_ids, [-100] * len(p_ids) + t_ids))
    if shuffle:
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


def mean_over_steps(metrics: dict[int, dict[str, float]], key: str, steps: range) -> float:
    """The mean of ``key`` over the ``steps`` of :func:`read_metrics`' output that logged it (AssertionError if none)."""
    values = [metrics[s][key] for s in steps if key in metrics.get(s, {})]
    assert values, f"{key} not logged at steps {list(steps)}"
    return sum(values) / len(values)


def read_metrics(path: Path) -> dict[int, dict[str, float]]:
    """verl's file logger (one JSON line per ``logger.log`` call) -> ``{step: {metric: value}}``."""
    out: dict[int, dict[str, float]] = {}
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        out.setdefault(int(rec["step"]), {}).update(rec["data"])
    return out
