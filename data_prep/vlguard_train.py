"""VLGuard train (ys-zong/VLGuard ``train.json``) -> rewriter training inputs, one row per (image, instruction).

Layout of ``train.json`` (a JSON list, one record per image): ``{"id", "image": "<folder>/<file>.png",
"safe": bool, "instr-resp": [...]}``, plus ``harmful_category`` / ``harmful_subcategory`` on unsafe images.

- an unsafe image (``safe: false``) has one ``{"instruction", "response"}``: subset ``unsafe``, harmful;
- a safe image has ``{"safe_instruction", "response"}`` (subset ``safe_safe``, unharmful: the helpfulness
  rows) and ``{"unsafe_instruction", "response"}`` (subset ``safe_unsafe``, harmful).

Every ``response`` in train.json is the *safe* reference answer (a helpful answer to a safe-safe pair, a
refusal otherwise), so ``reference_responses = {"safe": response, "unsafe": None}``. (``gpt4_safe_safes.json``
beside it holds GPT-4 answers for the 558 safe-safe pairs of the *test* split, not of train: not read here.)

Counts of the published file (a2f85c90): 2,000 records = 1,023 unsafe + 977 safe images -> 2,977 rows =
1,023 unsafe + 977 safe_safe + 977 safe_unsafe. The authors' file repeats the id ``Ads_303871`` (two
records, same image, different instructions), so a row's id is built from the record's index, and the
authors' id is kept in provenance (``src_id``). Images: ``--images DIR`` = the unpacked ``train`` images of
the Hub release, where ``image`` paths (``bad_ads/...``, ``privacyAlert/...``, ``hatefulMemes/...``,
``HOD/...``, ``harm-p/...``) resolve.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.benchmark_base import Benchmark, convert_benchmark, first_file
from data_prep.common import field, iter_json, text
from data_prep.rewrite_common import images_dir, load_image, rewrite_main, rewrite_sample
from guardrl.core.schema import SchemaError

NAME = "vlguard_train"
DATASET = "VLGuard-train"
#: subset -> (the instruction key in an ``instr-resp`` entry, harmful?)
_KINDS = {"unsafe": ("instruction", True), "safe_safe": ("safe_instruction", False),
          "safe_unsafe": ("unsafe_instruction", True)}
#: the published file's counts (ys-zong/VLGuard @ a2f85c90), asserted by the tests
COUNTS = {"records": 2000, "unsafe_images": 1023, "safe_images": 977, "rows": 2977,
          "unsafe": 1023, "safe_safe": 977, "safe_unsafe": 977}


def iter_pairs(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """One ``(where, {"record", "index", "pair", "pair_index"})`` per (image, instruction) entry of ``path``;
    where = ``train.json[i].instr-resp[j]``. A record whose ``instr-resp`` is not a non-empty list yields one
    item with ``pair`` None (a bad row for :func:`pair_sample`), so reading never stops at it."""
    for where, rec in iter_json(path):
        i = int(where.rsplit("[", 1)[-1].rstrip("]"))
        pairs = rec.get("instr-resp")
        if not isinstance(pairs, list) or not pairs:
            yield where, {"record": rec, "index": i, "pair": None, "pair_index": None}
            continue
        for j, pair in enumerate(pairs):
            yield f"{where}.instr-resp[{j}]", {"record": rec, "index": i, "pair": pair, "pair_index": j}


def _subset(rec: dict[str, Any], pair: dict[str, Any], where: str) -> str:
    safe = field(rec, "safe", where)
    if not isinstance(safe, bool):
        raise SchemaError(f"{where}: field 'safe' must be true/false, got {safe!r}")
    keys = [k for k in ("instruction", "safe_instruction", "unsafe_instruction") if k in pair]
    if len(keys) != 1:
        raise SchemaError(f"{where}: expected one of instruction / safe_instruction / unsafe_instruction, got {sorted(pair)}")
    subset = {"instruction": "unsafe", "safe_instruction": "safe_safe", "unsafe_instruction": "safe_unsafe"}[keys[0]]
    if (subset == "unsafe") == safe:
        raise SchemaError(f"{where}: {keys[0]!r} on an image marked safe={safe}")
    return subset


def pair_sample(where: str, item: dict[str, Any], images: Path):
    """The Sample of one (image, instruction) item of :func:`iter_pairs`."""
    rec, pair = item["record"], item["pair"]
    if not isinstance(pair, dict):
        raise SchemaError(f"{where}: field 'instr-resp' must be a non-empty list of objects")
    subset = _subset(rec, pair, where)
    key, harmful = _KINDS[subset]
    instruction = text(pair, key, where)
    response = text(pair, "response", where)
    image_ref = text(rec, "image", where)
    src_id = text(rec, "id", where)
    image = load_image(image_ref, images, f"{where} image")
    return rewrite_sample(sid=f"{NAME}/{item['index']}/{subset}", source=DATASET, request=instruction, image=image,
                          harmful=harmful, where=where, safe_ref=response, unsafe_ref=None,
                          category=rec.get("harmful_category"), subcategory=rec.get("harmful_subcategory"),
                          subset=subset, src_id=src_id, image_ref=image_ref, image_safe=rec["safe"])


def benchmark(images: Path) -> Benchmark:
    return Benchmark(name=NAME, dataset=DATASET, tasks=("rewrite",), patterns=("train.json", "**/train.json"),
                     rows=lambda where, item, path: [pair_sample(where, item, images)], reader=iter_pairs,
                     select=first_file, notes={"images": str(images), "published_counts": COUNTS,
                                               "use": "rewriter training source (synthesis input)"})


def convert(src, out, *, images: str | Path | None = None, **kw) -> Path:
    """``train.json`` (or a folder holding it) -> one shard dir of rewriter inputs (see the module doc)."""
    return convert_benchmark(benchmark(images_dir(images, src)), src, out, **kw)


def main(argv=None):
    rewrite_main(convert, "VLGuard train.json -> guardrl rewriter inputs (one row per image x instruction)", argv)


if __name__ == "__main__":
    main()
