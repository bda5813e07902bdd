"""VLSBench (AI45Lab/VLSBench ``data.json``) -> rewriter inputs: a synthesis source for training, and the
reader the evaluation converters reuse (:func:`read_vlsbench`).

Layout of ``data.json`` (a JSON list, 2,241 records at 68f54dea): ``{"instruction_id": int, "instruction",
"image_path": "imgs/<n>.png", "category", "sub_category", "source", "image_description", "safety_reason"}``.
Every pair is a safety case whose risk the image carries (the benchmark's design), so every row is
``harmful``. Quirks of the published file: ``image_path`` is not ``imgs/<instruction_id>.png`` past id 1235
and its 2,241 rows name 1,957 distinct images; row 1685 has an empty
``instruction`` (its text is in the image): kept, as an image-only input (modality ``image``), so the
benchmark keeps its 2,241 rows. Images: ``--images DIR`` = the Hub release's folder holding ``imgs/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.benchmark_base import Benchmark, convert_benchmark, first_file
from data_prep.common import field, iter_json, text
from data_prep.rewrite_common import images_dir, load_image, rewrite_main, rewrite_sample
from guardrl.core.schema import Sample, SchemaError

NAME = "vlsbench"
DATASET = "VLSBench"
#: the published file's counts (AI45Lab/VLSBench @ 68f54dea), asserted by the tests
COUNTS = {"rows": 2241, "distinct_images": 1957, "empty_instruction": 1,
          "category": {"Violent": 590, "Illegal Activity": 539, "Self-Harm": 370, "Erotic": 343, "Hate": 269,
                       "Privacy": 130}}


@dataclass(frozen=True)
class VLSBenchRecord:
    """One validated row of ``data.json`` (``where`` = ``data.json[i]``; ``instruction`` may be empty)."""

    where: str
    instruction_id: int
    instruction: str
    image_path: str
    category: str
    sub_category: str
    source: str
    image_description: str | None
    safety_reason: str | None


def parse_record(where: str, rec: dict[str, Any]) -> VLSBenchRecord:
    """Check one raw record.

    Raises:
        SchemaError: a missing or mistyped field, naming file and row.
    """
    iid = field(rec, "instruction_id", where)
    if isinstance(iid, bool) or not isinstance(iid, int):
        raise SchemaError(f"{where}: field 'instruction_id' must be an integer, got {iid!r}")
    return VLSBenchRecord(
        where=where, instruction_id=iid, instruction=text(rec, "instruction", where, allow_empty=True) or "",
        image_path=text(rec, "image_path", where), category=text(rec, "category", where),
        sub_category=text(rec, "sub_category", where), source=text(rec, "source", where),
        image_description=text(rec, "image_description", where, required=False),
        safety_reason=text(rec, "safety_reason", where, required=False))


def read_vlsbench(path: str | Path, *,
                  on_error: Callable[[str, Exception], None] | None = None) -> list[VLSBenchRecord]:
    """Every record of VLSBench's ``data.json``, in file order (JSON level: images are not opened).

    Args:
        on_error: called with ``(where, SchemaError)`` for a bad record, which is then left out; without it
            a bad record raises.

    Raises:
        SchemaError: a bad record (file and row named), unless ``on_error`` takes it; duplicate
            ``instruction_id``.
        SourceFileError: a file that is not JSON / not UTF-8.
    """
    out: list[VLSBenchRecord] = []
    seen: dict[int, str] = {}
    for where, rec in iter_json(Path(path)):
        try:
            r = parse_record(where, rec)
            if r.instruction_id in seen:
                raise SchemaError(f"{where}: instruction_id {r.instruction_id} already at {seen[r.instruction_id]}")
        except SchemaError as exc:
            if on_error is None:
                raise
            on_error(where, exc)
            continue
        seen[r.instruction_id] = where
        out.append(r)
    return out


def record_sample(r: VLSBenchRecord, images: Path, *, name: str = NAME) -> Sample:
    """The rewriter input of one record (harmful; category / subcategory = the benchmark's)."""
    image = load_image(r.image_path, images, f"{r.where} image")
    return rewrite_sample(sid=f"{name}/{r.instruction_id}", source=DATASET, request=r.instruction, image=image,
                          harmful=True, where=r.where, category=r.category, subcategory=r.sub_category,
                          subset="vlsbench", src_id=r.instruction_id, image_ref=r.image_path,
                          image_source=r.source, image_description=r.image_description,
                          safety_reason=r.safety_reason, empty_instruction=not r.instruction.strip())


def _reader(path: Path):
    # raw records; each is parsed inside the writer's guard so a bad one is named and raised or counted
    return iter_json(path)


def benchmark(images: Path) -> Benchmark:
    return Benchmark(name=NAME, dataset=DATASET, tasks=("rewrite",), patterns=("data.json", "**/data.json"),
                     rows=lambda where, rec, path: [record_sample(parse_record(where, rec), images)],
                     reader=_reader, select=first_file,
                     notes={"images": str(images), "published_counts": COUNTS, "label": "harmful (every row)"})


def convert(src, out, *, images: str | Path | None = None, **kw) -> Path:
    """``data.json`` (or a folder holding it) -> one shard dir of rewriter inputs (see the module doc)."""
    return convert_benchmark(benchmark(images_dir(images, src)), src, out, **kw)


def main(argv=None):
    rewrite_main(convert, "VLSBench data.json -> guardrl rewriter inputs (harmful image-text pairs)", argv)


if __name__ == "__main__":
    main()
