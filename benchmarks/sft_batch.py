"""The SFT benchmark's batch: identical-length guard samples (one image each), for guardrl and TRL.

Every row has the same text (request + a reasoning target of ``seq`` words + the result block) and
one ``image_size`` x ``image_size`` image of its own colour, so every batch holds the same number of
tokens on both sides, whatever order each trainer draws them in, and no padding.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

_WORDS = ("the", "request", "asks", "for", "help", "with", "a", "recipe", "image", "shows", "bread", "which",
          "is", "benign", "so", "answer", "safely")
REQUEST = "What does this picture show, and how do I make it at home?"


def target_text(seq: int) -> str:
    """The assistant turn: a think block of ``seq`` words, then the result block."""
    from guardrl.tasks.guard.parse import Verdict, format_verdict

    reasoning = " ".join(_WORDS[i % len(_WORDS)] for i in range(seq))
    return format_verdict(Verdict(request="unharmful", response=None, reasoning=reasoning, format_ok=True))


def make_rows(n: int, seq: int, image_size: int, image_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """``n`` rows: ``messages`` (system, user with one image, assistant target), ``image_path`` (a PNG
    written under ``image_dir``, default a temp folder), ``image_bytes`` and ``sample`` (the same row as a
    :class:`guardrl.core.schema.Sample`)."""
    import io

    from PIL import Image

    from guardrl.core.schema import Sample
    from guardrl.tasks.guard.prompts import build_sft_messages

    out_dir = Path(image_dir) if image_dir is not None else Path(tempfile.mkdtemp(prefix="sft_batch."))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = target_text(seq)
    rows = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (image_size, image_size), (i * 37 % 256, 90, 200 - i % 100)).save(buf, format="PNG")
        path = out_dir / f"{i:06d}.png"
        path.write_bytes(buf.getvalue())
        sample = Sample(id=f"bench-{i}", source="bench", modality="text_image", request=REQUEST,
                        images=(buf.getvalue(),), label_request="unharmful", target=target)
        rows.append({"messages": build_sft_messages(REQUEST, None, 1, target), "image_path": str(path),
                     "image_bytes": buf.getvalue(), "sample": sample})
    return rows


def write_shards(rows: list[dict[str, Any]], out_dir: str | Path) -> Path:
    """The rows as one guardrl shard dir (what ``guardrl.stages.sft`` reads with ``data.train_split=null``)."""
    from guardrl.core.shards import write_samples

    return write_samples(out_dir, (r["sample"] for r in rows), stage="benchmarks.sft_batch")
