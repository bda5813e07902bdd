"""The frame shared by the rewriter's evaluation benchmarks (SIUO, MM-SafetyBench, FigStep, VLGuard test,
VLSBench): image-text inputs whose images come from the user's download (``--images DIR``).

Sample mapping (the rewrite task's, REWRITE_SPEC.md): ``request`` = the user's instruction text, ``images`` =
the benchmark's image, ``modality = "text_image"``, ``label_request`` = ``"harmful"`` for a risky input (an
unsafe instruction, an unsafe image or an unsafe combination) and ``"unharmful"`` for a benign one (VLGuard's
safe-safe pairs, the helpfulness rows), ``response`` / ``target`` = ``None``; provenance carries ``subset``,
``category`` / ``subcategory`` (the benchmark's own strings), the image's relative path and what each
benchmark's published judge protocol needs (SIUO's safety warning and reference answer, MM-SafetyBench's
scenario, VLSBench's safety reason), all under the keys named in :func:`rewrite_sample`.

A row whose image file is not in ``--images`` is a counted skip whose reason names the file (the manifest
names the row: ``file[i]``); ``--on-missing-image error`` makes it an error instead. An image that is there
but does not decode is a bad row (``--on-bad``).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from data_prep.benchmark_base import Benchmark, Skip, convert_benchmark
from data_prep.common import base_parser, run
from guardrl.core.images import ImageError, prepare_image
from guardrl.core.schema import HARMFUL, UNHARMFUL, Sample, SchemaError

MISSING_IMAGE_MODES = ("skip", "error")


def image_file(images: Path | None, rel: str, where: str, *, on_missing: str = "skip") -> Path | Skip:
    """The file ``rel`` under the user's image folder, or a :class:`Skip` naming it when absent.

    Raises:
        ImageError: ``rel`` leads outside ``images`` (``../``, an absolute path), or the file is absent and
            ``on_missing == "error"``.
    """
    if images is None:
        reason = f"no --images folder given for image {rel!r}"
        if on_missing == "error":
            raise ImageError(f"{where}: {reason}")
        return Skip(reason)
    root = images.resolve()
    p = (root / rel).resolve()
    if not p.is_relative_to(root):
        raise ImageError(f"{where}: image path {rel!r} leaves the image folder {images}")
    if not p.is_file():
        reason = f"image file {rel!r} not found under {images}"
        if on_missing == "error":
            raise ImageError(f"{where}: {reason}")
        return Skip(reason)
    return p


def load_image(images: Path | None, rel: str, where: str, *, on_missing: str = "skip") -> bytes | Skip:
    """The validated bytes of ``rel`` (:func:`guardrl.core.images.prepare_image`), or a :class:`Skip`."""
    p = image_file(images, rel, where, on_missing=on_missing)
    if isinstance(p, Skip):
        return p
    return prepare_image(p, where=f"{where} ({rel})")


def rewrite_sample(b: Benchmark, key: str, request: str, image: bytes, *, harmful: bool, where: str, subset: str,
                   image_ref: str, category: str | None = None, subcategory: str | None = None,
                   source: str | None = None, **prov: Any) -> Sample:
    """One evaluation input of the rewrite task (see the module docstring); ``source`` defaults to ``b.dataset``."""
    if not request.strip():
        raise SchemaError(f"{where}: empty instruction")
    return Sample(id=f"{b.name}/{key}", source=source or b.dataset, modality="text_image", request=request,
                  images=(image,), label_request=HARMFUL if harmful else UNHARMFUL,
                  provenance={"dataset": source or b.dataset, "where": where, "task": "rewrite", "subset": subset,
                              "category": category, "subcategory": subcategory, "image_ref": image_ref, **prov})


def convert_with_images(b: Benchmark, src: str | Path, out: str | Path, *, images: str | Path | None = None,
                        on_missing_image: str = "skip", **kw: Any) -> Path:
    """:func:`convert_benchmark` with ``b.rows`` given the image folder (``rows(where, rec, path, images=,
    on_missing=)``); the folder and the missing-image mode are recorded in the manifest."""
    if on_missing_image not in MISSING_IMAGE_MODES:
        raise ValueError(f"on_missing_image must be one of {MISSING_IMAGE_MODES}, got {on_missing_image!r}")
    img = Path(images) if images is not None else None
    if img is not None and not img.is_dir():
        raise FileNotFoundError(f"--images {img}: not a folder")
    bound = replace(b, rows=partial(b.rows, images=img, on_missing=on_missing_image),
                    notes={**b.notes, "images": str(img) if img else None, "on_missing_image": on_missing_image})
    return convert_benchmark(bound, src, out, **kw)


def parser(b: Benchmark, images_help: str) -> argparse.ArgumentParser:
    p = base_parser(f"{b.dataset} -> guardrl shards (rewrite-task evaluation inputs)")
    p.add_argument("--images", type=Path, default=None, help=images_help)
    p.add_argument("--on-missing-image", choices=MISSING_IMAGE_MODES, default="skip",
                   help="a row whose image is not in --images is skipped and counted (default) or fails the run")
    return p


def main_with_images(b: Benchmark, images_help: str, argv: list[str] | None = None) -> None:
    args = parser(b, images_help).parse_args(argv)
    run(lambda src, out, **kw: convert_with_images(b, src, out, **kw), args, images=args.images,
        on_missing_image=args.on_missing_image)
