"""From one benchmark item and one completion to a scored record, through the task (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from guardrl.core.schema import Sample
from guardrl.tasks import DEFAULT_TASK, Task, get_task


@dataclass(frozen=True)
class EvalItem:
    """One benchmark sample: what the model sees and the gold labels (``None`` = label not scored).

    ``modality`` (``text`` | ``image`` | ``text_image``; empty = worked out from the images and the
    request text) and ``source`` (empty = unknown) feed the per-modality and per-source breakdowns;
    ``provenance`` is the shard row's (a task may keep its own gold there).
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
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def sample(self) -> Sample:
        """The item as a :class:`~guardrl.core.schema.Sample` (what a task renders and scores)."""
        return Sample(id=self.id, source=self.source, modality=modality_of(self), request=self.request,
                      response=self.response, images=tuple(self.images), label_request=self.label_request,
                      label_response=self.label_response, provenance=dict(self.provenance))


def modality_of(item: EvalItem) -> str:
    """The item's modality: as given, else ``text`` without images, ``image`` with images and no text, else ``text_image``."""
    if item.modality:
        return item.modality
    if not item.images:
        return "text"
    return "text_image" if item.request.strip() else "image"


def score(item: EvalItem, completion_text: str, output_tokens: int, task: Task | None = None) -> Any:
    """``task.score`` (default: the guard's strict parse paired with the gold labels) of one completion."""
    return (task or get_task(DEFAULT_TASK)).score(item.sample(), completion_text, output_tokens)
