"""Shared reader for the two image benchmarks the GuardReasoner-VL authors publish in
``yueliu1999/GuardReasoner-VLTest`` (HarmImageTest, SPA-VL-Eval).

Layout (Hugging Face ``imagefolder``): ``test/<Name>.json`` -- a list of LLaMA-Factory style records
``{"messages": [{"role": "user", "content": "<image>...Human user:\\n<request>\\n\\nAI assistant:\\n<response>"},
{"role": "assistant", "content": "...Request: harmful\\nResponse: unharmful..."}], "images": ["<Name>/0001.jpg"]}``
-- plus the images in ``test/<Name>/``. Image paths are resolved against the JSON's folder. Where a
record has no ``images`` entry, the authors' evaluation pairs record *i* with the *i*-th image of the
folder (sorted by name); that fallback is used and recorded in provenance (``image_by_index``).
Labels come from the assistant message's ``Request:`` / ``Response:`` lines (normalised).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from data_prep.benchmark_base import Benchmark
from data_prep.guardreasoner_vltrain import _load_image, split_input
from guardrl.core.schema import Sample, SchemaError, normalize_label

_REQ = re.compile(r"request\s*:\s*([A-Za-z]+)", re.IGNORECASE)
_RESP = re.compile(r"response\s*:\s*([A-Za-z]+)", re.IGNORECASE)
_IMG_EXT = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
_folder_cache: dict[Path, list[Path]] = {}


def _folder_images(folder: Path) -> list[Path]:
    if folder not in _folder_cache:
        _folder_cache[folder] = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMG_EXT) if folder.is_dir() else []
    return _folder_cache[folder]


def _label(pattern: re.Pattern, text: str, where: str, what: str) -> str | None:
    m = pattern.search(text)
    if not m:
        return None
    v = m.group(1).lower()
    if v in ("none", "null"):
        return None
    return normalize_label("unharmful" if v == "harmless" else v, where=f"{where} {what} label")


def vltest_rows(b: Benchmark, where: str, rec: dict[str, Any], path: Path, *, with_response: bool):
    msgs = rec.get("messages") or rec.get("conversations")
    if not isinstance(msgs, list) or len(msgs) < 2:
        raise SchemaError(f"{where}: missing field 'messages' (user + assistant turns)")
    user = next((m.get("content") for m in msgs if isinstance(m, dict) and m.get("role") in ("user", "human")), None)
    bot = next((m.get("content") for m in msgs if isinstance(m, dict) and m.get("role") in ("assistant", "gpt")), None)
    if not isinstance(user, str) or not isinstance(bot, str):
        raise SchemaError(f"{where}: messages need a user and an assistant turn with text")
    if "Human user:" in user:
        user = user[user.index("Human user:"):]
    request, response = split_input(user, where)
    lr = _label(_REQ, bot, where, "request")
    lp = _label(_RESP, bot, where, "response") if (with_response and response is not None) else None
    if lr is None and lp is None:
        raise SchemaError(f"{where}: assistant message has no 'Request: <label>' line")
    refs = rec.get("images") or []
    by_index = False
    if not refs:
        idx = int(where.rsplit("[", 1)[-1].rstrip("]"))
        imgs = _folder_images(path.parent / path.stem)
        if idx >= len(imgs):
            raise SchemaError(f"{where}: no 'images' entry and no image #{idx} in {path.parent / path.stem}")
        refs, by_index = [str(imgs[idx].relative_to(path.parent))], True
    images = tuple(_load_image(r, [path.parent], f"{where} image[{i}]") for i, r in enumerate(refs))
    modality = "text_image" if request else "image"
    return Sample(id=f"{b.name}/{where.rsplit('[', 1)[-1].rstrip(']')}", source=b.dataset, modality=modality,
                  request=request, response=response if with_response else None, images=images,
                  label_request=lr, label_response=lp,
                  provenance={"dataset": b.dataset, "where": where, "task": "+".join(b.tasks),
                              "image_by_index": by_index, "image_refs": [str(r) for r in refs]})
