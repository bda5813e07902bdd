"""SPA-VL train (Hugging Face ``sqrti/SPA-VL``, config ``default``, split ``train``) -> rewriter inputs.

No copy of SPA-VL is among the real files this project tests against: the layout below is the dataset
card's (README.md ``dataset_info``, revision 0e75b34 on the Hub): the ``default`` config's train split
(``data/train-0000K-of-00008.parquet``, 93,258 rows) has the columns ``image`` (a ``datasets`` Image:
``{"bytes", "path"}``), ``question``, ``chosen``, ``rejected``, ``image_name``. The ``validation`` config
(7,000 rows) has ``class1`` / ``class2`` / ``class3`` instead of ``image_name``; when present they become
``category`` (class1, the harm domain), ``subcategory`` (class2) and ``class3`` in provenance.

Mapping: ``request`` = question, ``reference_responses`` = ``{"safe": chosen, "unsafe": rejected}`` (the
preference pair: chosen is the safer answer). Every SPA-VL question was generated for one of its harm
subcategories and the train split carries no per-row harm label, so every row is ``harmful`` (recorded in
the manifest's config). Images: the ``image`` column's bytes when the Parquet embeds them; otherwise
``image.path`` or ``image_name`` resolved under ``--images DIR`` (the unpacked ``train.zip``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_prep.benchmark_base import Benchmark, convert_benchmark
from data_prep.common import iter_parquet, text
from data_prep.rewrite_common import images_dir, load_image, rewrite_main, rewrite_sample
from guardrl.core.schema import SchemaError

NAME = "spa_vl_train"
DATASET = "SPA-VL-train"
#: the train split's columns on the dataset card (sqrti/SPA-VL README.md, config default)
COLUMNS = ("image", "question", "chosen", "rejected", "image_name")
CARD_ROWS = 93258


def _image_ref(rec: dict[str, Any], where: str) -> Any:
    img = rec.get("image")
    if isinstance(img, dict) and img.get("bytes"):
        return {"bytes": img["bytes"]}
    if isinstance(img, bytes | bytearray) and img:
        return bytes(img)
    for ref in ((img or {}).get("path") if isinstance(img, dict) else img, rec.get("image_name")):
        if isinstance(ref, str) and ref.strip():
            return ref
    raise SchemaError(f"{where}: no image (neither embedded bytes in 'image' nor a path / 'image_name')")


def row_sample(where: str, rec: dict[str, Any], images: Path):
    """The Sample of one SPA-VL row."""
    i = int(where.rsplit(" ", 1)[-1])
    file = where.split(":", 1)[0]
    question = text(rec, "question", where)
    chosen = text(rec, "chosen", where)
    rejected = text(rec, "rejected", where)
    ref = _image_ref(rec, where)
    image = load_image(ref, images, f"{where} image")
    name = rec.get("image_name") if isinstance(rec.get("image_name"), str) else None
    extra = {"class3": rec["class3"]} if isinstance(rec.get("class3"), str) else {}
    return rewrite_sample(sid=f"{NAME}/{Path(file).stem}/{i}", source=DATASET, request=question, image=image,
                          harmful=True, where=where, safe_ref=chosen, unsafe_ref=rejected,
                          category=rec.get("class1") if isinstance(rec.get("class1"), str) else None,
                          subcategory=rec.get("class2") if isinstance(rec.get("class2"), str) else None,
                          image_ref=name or (ref if isinstance(ref, str) else None), **extra)


def benchmark(images: Path) -> Benchmark:
    return Benchmark(name=NAME, dataset=DATASET, tasks=("rewrite",),
                     patterns=("*.parquet", "data/train-*.parquet", "**/train-*.parquet"),
                     rows=lambda where, rec, path: [row_sample(where, rec, images)], reader=iter_parquet,
                     notes={"images": str(images), "card_rows": CARD_ROWS, "columns": list(COLUMNS),
                            "label": "harmful (every row: questions generated per harm subcategory)"})


def convert(src, out, *, images: str | Path | None = None, **kw) -> Path:
    """The train Parquet file(s) (a file, or the folder holding ``data/train-*.parquet``) -> one shard dir."""
    return convert_benchmark(benchmark(images_dir(images, src)), src, out, **kw)


def main(argv=None):
    rewrite_main(convert, "SPA-VL train Parquet -> guardrl rewriter inputs (question + chosen / rejected)", argv)


if __name__ == "__main__":
    main()
