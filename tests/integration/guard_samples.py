"""Test data shaped like guardrl's SFT data: text, image and text-image samples from guard-mini.

Images are typographic (the request rendered into a picture), as in the demo.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

from guardrl.core.schema import Sample
from guardrl.core.shards import write_samples
from guardrl.generation.base import Prompt
from guardrl.tasks.guard.prompts import build_messages

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "data" / "guard-mini" / "train.jsonl"


def typographic(text: str, size: tuple[int, int] = (112, 56)) -> bytes:
    img = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(img).multiline_text((2, 2), "\n".join(text[i : i + 16] for i in range(0, 48, 16)), fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def guard_prompt(request: str, response: str | None = None, images: tuple[bytes, ...] = (), id: str = "") -> Prompt:
    """The engine input for a guard prompt: the guard's rendered messages + the images (what the stages build
    through ``task.prompt_messages``)."""
    return Prompt(build_messages(request, response, num_images=len(images)), images, id)


def make_samples(n: int) -> list[Sample]:
    """``n`` samples cycling text / image / text_image, with gold labels from the corpus."""
    out: list[Sample] = []
    with CORPUS.open(encoding="utf-8") as fh:
        for line in fh:
            if len(out) == n:
                break
            row = json.loads(line)
            req, resp = row["prompt"], row.get("response")
            lab_req, lab_resp = row.get("label_prompt"), row.get("label_response") if resp else None
            if lab_req is None and lab_resp is None:
                continue
            modality = ("text", "image", "text_image")[len(out) % 3]
            images = () if modality == "text" else (typographic(req),)
            out.append(
                Sample(
                    id=row["id"],
                    source=row["source"],
                    modality=modality,
                    request="" if modality == "image" else req,
                    response=resp if resp else None,
                    images=images,
                    label_request=lab_req,
                    label_response=lab_resp,
                    target="<think>\nx\n</think>\n<result>\nRequest: harmful\nResponse: None\n</result>",
                )
            )
    return out


def write_sft_dir(path: Path, n: int) -> Path:
    return write_samples(path, make_samples(n), stage="test.sft_data")
