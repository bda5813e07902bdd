"""What the rewriter's training-source converters share (vlguard_train, vlsbench, spa_vl_train).

Mapping (REWRITE_SPEC.md): ``request`` = the user's instruction, ``images`` = the user's image,
``label_request`` = ``harmful`` for a risky input / ``unharmful`` for a benign one, no response, no target
(synthesis fills it); provenance holds ``reference_responses`` ``{"safe", "unsafe"}`` where the source has
them, ``category`` / ``subcategory`` and ``subset``.

Images are not shipped with the JSON files: ``--images DIR`` is the user's download, and the relative paths
the source names are resolved under it (never outside it). A missing or undecodable image is a bad row:
``--on-bad error`` stops naming file and row, ``--on-bad skip`` counts it in the manifest (``skipped``).
Images are decoded with pixel limits by :func:`guardrl.core.images.prepare_image`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_prep.common import base_parser, run
from data_prep.guardreasoner_vltrain import _load_image
from guardrl.core.schema import Sample


def load_image(ref: Any, images: Path, where: str) -> bytes:
    """The stored bytes of the image ``ref`` (a path relative to ``images``, or ``{"bytes", "path"}`` as a
    Hugging Face ``Image`` column holds it), decoded and checked.

    Raises:
        ImageError: missing file, a path leaving ``images``, not an image, over the pixel limits.
    """
    return _load_image(ref, [Path(images)], where)


def rewrite_sample(*, sid: str, source: str, request: str, image: bytes, harmful: bool, where: str,
                   safe_ref: str | None = None, unsafe_ref: str | None = None, category: str | None = None,
                   subcategory: str | None = None, subset: str | None = None, **extra: Any) -> Sample:
    """One rewriter input row (an instruction + one image; modality ``image`` when the text is empty)."""
    prov: dict[str, Any] = {"dataset": source, "where": where, "task": "rewrite",
                            "reference_responses": {"safe": safe_ref, "unsafe": unsafe_ref},
                            "category": category, "subcategory": subcategory}
    if subset is not None:
        prov["subset"] = subset
    prov.update(extra)
    return Sample(id=sid, source=source, modality="text_image" if request.strip() else "image", request=request,
                  response=None, images=(image,), label_request="harmful" if harmful else "unharmful",
                  label_response=None, target=None, provenance=prov)


def images_dir(images: str | Path | None, src: str | Path) -> Path:
    """``--images``, or by default the folder of ``src`` (a clone with the images unpacked beside the JSON)."""
    if images is not None:
        p = Path(images)
        if not p.is_dir():
            raise FileNotFoundError(f"--images {p}: not a folder (the downloaded images of the data set)")
        return p
    s = Path(src)
    return s if s.is_dir() else s.parent


def rewrite_main(convert: Callable[..., Path], description: str, argv: list[str] | None = None) -> None:
    """``python -m data_prep.NAME --src F --images DIR --out D [--on-bad skip] [--limit N]``."""
    p: argparse.ArgumentParser = base_parser(description)
    p.add_argument("--images", type=Path, default=None,
                   help="folder of the downloaded images (the source's relative paths resolve under it; "
                        "default: the folder of --src)")
    args = p.parse_args(argv)
    run(convert, args, images=args.images)
