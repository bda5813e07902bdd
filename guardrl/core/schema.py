"""The one row schema every guardrl Parquet shard follows.

A sample is one human/AI interaction: a request (text, image(s) or both), an
optional AI response, the gold labels for the request and response tasks, an
optional SFT target (reasoning + result) and provenance.

Labels are the strings ``"harmful"`` / ``"unharmful"``; ``None`` means the
sample carries no label for that task (no response, or an unlabelled request:
such a task is simply not scored). Images are stored as encoded PNG/JPEG bytes,
never as pickled arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1

HARMFUL = "harmful"
UNHARMFUL = "unharmful"
LABELS: tuple[str, ...] = (HARMFUL, UNHARMFUL)
MODALITIES: tuple[str, ...] = ("text", "image", "text_image")

ARROW_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("request", pa.string(), nullable=False),
        pa.field("response", pa.string(), nullable=True),
        pa.field("images", pa.list_(pa.binary()), nullable=False),
        pa.field("label_request", pa.string(), nullable=True),
        pa.field("label_response", pa.string(), nullable=True),
        pa.field("target", pa.string(), nullable=True),
        pa.field("provenance", pa.string(), nullable=False),  # JSON object
    ],
    metadata={"guardrl.schema_version": str(SCHEMA_VERSION)},
)
COLUMNS: tuple[str, ...] = tuple(ARROW_SCHEMA.names)


class SchemaError(ValueError):
    """A value that does not fit the schema; the message names where it came from."""


_LABEL_ALIASES = {
    "harmful": HARMFUL,
    "unsafe": HARMFUL,
    "unharmful": UNHARMFUL,
    "harmless": UNHARMFUL,
    "safe": UNHARMFUL,
    "not harmful": UNHARMFUL,
    "benign": UNHARMFUL,
}
_NULL_LABELS = {"", "none", "null", "n/a", "na"}


def normalize_label(value: Any, *, where: str = "", allow_none: bool = True) -> str | None:
    """Map a raw label to ``"harmful"`` / ``"unharmful"`` / ``None``.

    Case and surrounding whitespace are ignored (``"Harmful "`` -> ``"harmful"``);
    booleans and 0/1 map to harmful/unharmful (1/True = harmful).

    Raises:
        SchemaError: for an unknown label (``"maybe"``), naming ``where``.
    """
    if value is None:
        if allow_none:
            return None
        raise SchemaError(f"{where}: missing label".lstrip(": "))
    if isinstance(value, bool):
        return HARMFUL if value else UNHARMFUL
    if isinstance(value, int | float) and value in (0, 1):
        return HARMFUL if value == 1 else UNHARMFUL
    if isinstance(value, str):
        key = " ".join(value.strip().lower().split())
        if key in _LABEL_ALIASES:
            return _LABEL_ALIASES[key]
        if key in _NULL_LABELS and allow_none:
            return None
    raise SchemaError(f"{where}: unknown label {value!r} (expected 'harmful' or 'unharmful')".lstrip(": "))


@dataclass(frozen=True)
class Sample:
    """One row of a guardrl Parquet shard (see ``ARROW_SCHEMA``)."""

    id: str
    source: str
    modality: str
    request: str
    response: str | None = None
    images: tuple[bytes, ...] = ()
    label_request: str | None = None
    label_response: str | None = None
    target: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_sample(self)

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "modality": self.modality,
            "request": self.request,
            "response": self.response,
            "images": list(self.images),
            "label_request": self.label_request,
            "label_response": self.label_response,
            "target": self.target,
            "provenance": json.dumps(self.provenance, sort_keys=True, ensure_ascii=False),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Sample:
        prov = row.get("provenance") or "{}"
        return cls(
            id=row["id"],
            source=row["source"],
            modality=row["modality"],
            request=row["request"],
            response=row.get("response"),
            images=tuple(row.get("images") or ()),
            label_request=row.get("label_request"),
            label_response=row.get("label_response"),
            target=row.get("target"),
            provenance=json.loads(prov) if isinstance(prov, str) else dict(prov),
        )


def validate_sample(s: Sample, *, where: str = "") -> None:
    """Check one sample against the schema's rules.

    Raises:
        SchemaError: naming ``where`` (file and row) and the offending field.
    """
    at = f"{where} (id={s.id!r})" if where else f"sample id={s.id!r}"
    if not s.id:
        raise SchemaError(f"{at}: empty id")
    if s.modality not in MODALITIES:
        raise SchemaError(f"{at}: modality {s.modality!r} not in {MODALITIES}")
    if s.modality == "text" and s.images:
        raise SchemaError(f"{at}: modality 'text' but {len(s.images)} image(s)")
    if s.modality != "text" and not s.images:
        raise SchemaError(f"{at}: modality {s.modality!r} needs at least one image")
    if s.modality != "image" and not s.request.strip():
        raise SchemaError(f"{at}: empty request text")
    for name in ("label_request", "label_response"):
        value = getattr(s, name)
        if value is not None and value not in LABELS:
            raise SchemaError(f"{at}: {name} {value!r} not in {LABELS}")
    if s.label_request is None and s.label_response is None:
        raise SchemaError(f"{at}: neither a request nor a response label")
    if s.label_response is not None and s.response is None:
        raise SchemaError(f"{at}: a response label without a response")
