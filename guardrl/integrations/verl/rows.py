"""The one writer (and reader) of verl RL rows: data only, the prompt is rendered when verl loads them.

Used by the RL set (:func:`guardrl.stages.augment.runner.build_rl_set`, ``guardrl augment run``) and the CPU demo set
(:func:`guardrl.integrations.verl.entry.write_demo_rl_set`). Imports neither verl nor a task module: the task
comes in as an argument. Layout of a row (Parquet schema :data:`VERL_SCHEMA`)::

    data_source   the sample's source ("concat" for joined samples); verl groups validation metrics by it
    ability       the task's name (``task.name``, "guard"): which task built the row
    sample        {"request", "response", "label_request", "label_response"}: the sample's own data
    images        [{"bytes": PNG/JPEG bytes}, ...]   ([] for text samples); verl's image_key
    reward_model  {"style": "rule", "ground_truth": JSON string of task.ground_truth(sample)}
    extra_info    {"index", "id", "modality", "source", "parents"}

There is no ``prompt`` column: :class:`guardrl.integrations.verl.dataset.TaskRLDataset` (verl's
``data.custom_cls``, set by ``guardrl rl``) renders it from the row with the recipe's task
(``task.prompt_messages``) each time the set is loaded, so a template change needs no rebuild. A
Parquet file that has a ``prompt`` column is verl's own layout and is loaded as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from guardrl.core.atomic import atomic_file
from guardrl.core.schema import Sample

IMAGE_PLACEHOLDER = "<image>"  # verl's RLHFDataset replaces each one with the next item of `images`
_STR = pa.string()
VERL_SCHEMA = pa.schema(
    [
        pa.field("data_source", _STR),
        pa.field("ability", _STR),
        pa.field("sample", pa.struct([("request", _STR), ("response", _STR), ("label_request", _STR),
                                      ("label_response", _STR)])),
        pa.field("images", pa.list_(pa.struct([("bytes", pa.binary())]))),
        pa.field("reward_model", pa.struct([("style", _STR), ("ground_truth", _STR)])),
        pa.field(
            "extra_info",
            pa.struct([("index", pa.int64()), ("id", _STR), ("modality", _STR), ("source", _STR),
                       ("parents", pa.list_(_STR))]),
        ),
    ]
)


def to_verl_row(s: Sample, index: int, task: Any) -> dict[str, Any]:
    """One sample as a verl RL row (layout in the module docstring); ``task`` gives the ground truth."""
    return {
        "data_source": s.source,
        "ability": task.name,
        "sample": {"request": s.request, "response": s.response, "label_request": s.label_request,
                   "label_response": s.label_response},
        "images": [{"bytes": b} for b in s.images],
        "reward_model": {"style": "rule", "ground_truth": json.dumps(task.ground_truth(s), sort_keys=True)},
        "extra_info": {"index": index, "id": s.id, "modality": s.modality, "source": s.source,
                       "parents": list(s.provenance.get("parents", []))},
    }


def write_verl_parquet(samples: Iterable[Sample], path: str | Path, task: Any, row_group: int = 256) -> int:
    """Write samples as one verl Parquet file (atomically, streamed in row groups); returns the row count."""
    n, buf = 0, []
    with atomic_file(path, "wb") as fh, pq.ParquetWriter(fh, VERL_SCHEMA) as w:
        for s in samples:
            buf.append(to_verl_row(s, n, task))
            n += 1
            if len(buf) == row_group:
                w.write_table(pa.Table.from_pylist(buf, schema=VERL_SCHEMA))
                buf.clear()
        if buf or n == 0:
            w.write_table(pa.Table.from_pylist(buf, schema=VERL_SCHEMA))
    return n


def sample_from_row(row: Mapping[str, Any]) -> Sample:
    """The :class:`Sample` a verl row was written from (what ``task.prompt_messages`` reads).

    Raises:
        KeyError / SchemaError: the row lacks a column of the layout or breaks the schema's rules.
    """
    data, extra = row["sample"], row["extra_info"]
    return Sample(id=extra["id"], source=extra["source"], modality=extra["modality"], request=data["request"],
                  response=data.get("response"), images=tuple(i["bytes"] for i in row.get("images") or ()),
                  label_request=data.get("label_request"), label_response=data.get("label_response"),
                  provenance={"parents": list(extra.get("parents") or [])})


def verl_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Hugging Face content-list messages -> verl's dataset layout: string content, one ``<image>`` per
    image item, in place (verl's RLHFDataset turns them back into content lists with the row's images)."""
    out = []
    for m in messages:
        content = m["content"]
        if not isinstance(content, str):
            parts = []
            for item in content:
                if item.get("type") == "image":
                    parts.append(IMAGE_PLACEHOLDER)
                elif item.get("type") == "text":
                    parts.append(item["text"])
                else:
                    raise ValueError(f"message content of type {item.get('type')!r}: verl rows hold text and images")
            content = "".join(parts)
        out.append({"role": m["role"], "content": content})
    return out
