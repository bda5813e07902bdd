"""From one benchmark item and one completion to a scored record (pure: parser + metrics only)."""

from __future__ import annotations

from dataclasses import dataclass

from guardrl.metrics import Scored
from guardrl.parse import parse


@dataclass(frozen=True)
class EvalItem:
    """One benchmark sample: what the guard sees and the gold labels (``None`` = task not scored).

    ``modality`` (``text`` | ``image`` | ``text_image``; empty = worked out from the images and the
    request text) and ``source`` (empty = unknown) feed the per-modality and per-source breakdowns.
    """

    id: str
    benchmark: str
    request: str
    response: str | None
    images: tuple[bytes, ...]
    label_request: str | None
    label_response: str | None
    modality: str = ""
    source: str = ""


def modality_of(item: EvalItem) -> str:
    """The item's modality: as given, else ``text`` without images, ``image`` with images and no text, else ``text_image``."""
    if item.modality:
        return item.modality
    if not item.images:
        return "text"
    return "text_image" if item.request.strip() else "image"


def score(item: EvalItem, completion_text: str, output_tokens: int) -> Scored:
    """Parse ``completion_text`` strictly and pair it with ``item``'s gold labels."""
    v = parse(completion_text)
    return Scored(
        gold_request=item.label_request,
        gold_response=item.label_response,
        pred_request=v.request,
        pred_response=v.response,
        format_ok=v.format_ok,
        output_tokens=int(output_tokens),
        modality=modality_of(item),
        source=item.source or None,
    )
