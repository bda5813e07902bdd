"""Safety-aware data concatenation (GuardReasoner-VL, stage 2): join two samples into a harder one.

Pure functions (PIL + the schema; no Ray, verl, vLLM or torch):

* texts are concatenated with :data:`SEPARATOR` (requests with requests,
  responses with responses; an empty or absent part is left out);
* all images of both samples are merged into one (:func:`merge_images`:
  horizontal, vertical or grid, each image's aspect kept, the canvas capped at
  ``max_pixels``, deterministic);
* labels follow "unharmful only if both are unharmful", separately for the
  request and the response (:func:`combine_labels`; an unlabelled part makes
  the result unknown unless another part is harmful);
* pairs are drawn at random with a seed, across modalities (:func:`plan_pairs`),
  and the augmented share of the RL set is configurable (:func:`num_augmented`,
  default 20%). Each new sample records its parents' ids in ``provenance``.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from guardrl.core.images import open_stored
from guardrl.core.schema import HARMFUL, UNHARMFUL, Sample

SEPARATOR = "\n\n"
LAYOUTS: tuple[str, ...] = ("auto", "horizontal", "vertical", "grid")
DEFAULT_MAX_PIXELS = 1024 * 1024
DEFAULT_SHARE = 0.2
SOURCE = "concat"
BACKGROUND = (255, 255, 255)


class AugmentError(ValueError):
    """Two samples that cannot be joined (e.g. the joined sample would carry no label)."""


# ---------------------------------------------------------------------------------------------- labels
def combine_labels(labels: Sequence[str | None]) -> str | None:
    """The label of a concatenation of parts with these labels.

    ``harmful`` if any part is harmful; ``unharmful`` only if every part is
    unharmful; otherwise (an unlabelled part, no harmful one) ``None``. An empty
    sequence (no part has this task) gives ``None``.

    >>> combine_labels(["unharmful", "harmful"]), combine_labels(["unharmful", "unharmful"])
    ('harmful', 'unharmful')
    >>> combine_labels(["unharmful", None]), combine_labels([None, "harmful"])
    (None, 'harmful')
    """
    if any(lab == HARMFUL for lab in labels):
        return HARMFUL
    if labels and all(lab == UNHARMFUL for lab in labels):
        return UNHARMFUL
    return None


def join_texts(parts: Sequence[str], separator: str = SEPARATOR) -> str:
    """Non-empty parts joined by ``separator`` (an empty image-only request adds nothing)."""
    return separator.join(p for p in parts if p.strip())


# ---------------------------------------------------------------------------------------------- images
@dataclass(frozen=True)
class Merged:
    """A merged image and where each input went: ``boxes[i] = (x, y, w, h)`` of input ``i``."""

    image: Image.Image
    boxes: tuple[tuple[int, int, int, int], ...]
    scale: float
    layout: str


def _place(sizes: Sequence[tuple[int, int]], layout: str) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """Canvas size and top-left offsets for images of ``sizes`` in ``layout`` (no scaling)."""
    n = len(sizes)
    if layout == "horizontal":
        xs = [sum(w for w, _ in sizes[:i]) for i in range(n)]
        return (sum(w for w, _ in sizes), max(h for _, h in sizes)), [(x, 0) for x in xs]
    if layout == "vertical":
        ys = [sum(h for _, h in sizes[:i]) for i in range(n)]
        return (max(w for w, _ in sizes), sum(h for _, h in sizes)), [(0, y) for y in ys]
    if layout == "grid":
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        col_w = [max((sizes[i][0] for i in range(c, n, cols)), default=0) for c in range(cols)]
        row_h = [max(sizes[i][1] for i in range(r * cols, min(n, (r + 1) * cols))) for r in range(rows)]
        offsets = [(sum(col_w[: i % cols]), sum(row_h[: i // cols])) for i in range(n)]
        return (sum(col_w), sum(row_h)), offsets
    raise ValueError(f"unknown layout {layout!r}; valid: {list(LAYOUTS)}")


def choose_layout(sizes: Sequence[tuple[int, int]]) -> str:
    """The layout whose canvas is closest to square (ties: horizontal, vertical, grid)."""

    def skew(layout: str) -> float:
        (w, h), _ = _place(sizes, layout)
        return max(w / h, h / w)

    return min(("horizontal", "vertical", "grid"), key=skew)


def merge_images(
    images: Sequence[Image.Image],
    layout: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = BACKGROUND,
) -> Merged:
    """Merge images into one RGB canvas; every input keeps its aspect ratio.

    All inputs are scaled by one factor ``s <= 1`` (sides rounded down, at least
    1 px) so that the canvas has at most ``max_pixels`` pixels; with ``s == 1``
    each input appears pixel for pixel at its box. Free canvas is ``background``.

    Raises:
        ValueError: no images, an unknown layout, or ``max_pixels`` too small to hold them.
    """
    if not images:
        raise ValueError("merge_images needs at least one image")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {list(LAYOUTS)}")
    if max_pixels < len(images):
        raise ValueError(f"max_pixels={max_pixels} cannot hold {len(images)} images")
    rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
    sizes = [im.size for im in rgb]
    chosen = choose_layout(sizes) if layout == "auto" else layout
    (cw, ch), _ = _place(sizes, chosen)
    scale = min(1.0, math.sqrt(max_pixels / (cw * ch)))
    for _ in range(200):
        scaled = sizes if scale == 1.0 else [(max(1, int(w * scale)), max(1, int(h * scale))) for w, h in sizes]
        (cw, ch), offsets = _place(scaled, chosen)
        if cw * ch <= max_pixels:
            break
        scale *= 0.99
    else:  # pragma: no cover - only for absurd aspect ratios
        raise ValueError(f"cannot fit {sizes} into {max_pixels} pixels with layout {chosen!r}")
    canvas = Image.new("RGB", (cw, ch), background)
    boxes = []
    for im, (w, h), (x, y) in zip(rgb, scaled, offsets, strict=True):
        canvas.paste(im if im.size == (w, h) else im.resize((w, h), Image.Resampling.BICUBIC), (x, y))
        boxes.append((x, y, w, h))
    return Merged(image=canvas, boxes=tuple(boxes), scale=scale, layout=chosen)


def decode_image(data: bytes, where: str = "image") -> Image.Image:
    """Decode stored image bytes to RGB with guardrl's safe decoder (:func:`guardrl.core.images.open_stored`).

    Raises:
        guardrl.core.images.ImageError: (a ``ValueError``) corrupt, too large or not an image.
    """
    return open_stored(data, where=where)


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes (deterministic for the same pixels)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- samples
def concat_id(a_id: str, b_id: str) -> str:
    """A stable id for the concatenation of ``a_id`` and ``b_id`` (order matters)."""
    digest = hashlib.sha1((a_id + "\0" + b_id).encode()).hexdigest()[:16]
    return f"{SOURCE}-{digest}"


def concat_samples(
    a: Sample,
    b: Sample,
    *,
    layout: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    separator: str = SEPARATOR,
) -> Sample:
    """Join ``a`` then ``b`` into one sample (see the module docstring for the rules).

    Raises:
        AugmentError: the joined sample would have neither a request nor a response label.
        ValueError: an image that cannot be decoded.
    """
    parts = (a, b)
    request = join_texts([s.request for s in parts], separator)
    with_response = [s for s in parts if s.response is not None]
    response = join_texts([s.response or "" for s in with_response], separator) if with_response else None
    if response is not None and not response.strip():
        response = None
    label_request = combine_labels([s.label_request for s in parts])
    label_response = combine_labels([s.label_response for s in with_response]) if response is not None else None
    if label_request is None and label_response is None:
        raise AugmentError(f"joining {a.id!r} and {b.id!r} gives no known label")
    raw = [img for s in parts for img in s.images]
    raw_where = [(img, s.id) for s in parts for img in s.images]
    prov: dict = {
        "augment": "concat",
        "parents": [a.id, b.id],
        "parent_sources": [a.source, b.source],
        "parent_modalities": [a.modality, b.modality],
    }
    if len(raw) > 1:
        merged = merge_images([decode_image(x, f"{s_id} image") for x, s_id in raw_where], layout=layout, max_pixels=max_pixels)
        images: tuple[bytes, ...] = (encode_png(merged.image),)
        prov.update(layout=merged.layout, scale=round(merged.scale, 6))
    else:
        images = tuple(raw)
    modality = "text" if not images else ("image" if not request.strip() else "text_image")
    return Sample(
        id=concat_id(a.id, b.id),
        source=SOURCE,
        modality=modality,
        request=request,
        response=response,
        images=images,
        label_request=label_request,
        label_response=label_response,
        target=None,
        provenance=prov,
    )


# ---------------------------------------------------------------------------------------------- pairing
def num_augmented(num_base: int, share: float = DEFAULT_SHARE) -> int:
    """How many joined samples make them ``share`` of the set: ``round(share * N / (1 - share))``.

    >>> num_augmented(800, 0.2)   # 800 base + 200 joined: 200 / 1000 = 20%
    200

    Raises:
        ValueError: ``share`` outside ``[0, 1)`` or a negative count.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1), got {share}")
    if num_base < 0:
        raise ValueError(f"num_base must be >= 0, got {num_base}")
    return round(share * num_base / (1.0 - share))


def plan_pairs(pool_size: int, num_pairs: int, seed: int = 0) -> list[tuple[int, int]]:
    """``num_pairs`` ordered pairs ``(i, j)``, ``i != j``, of indices into a pool, drawn with a seed.

    Modality is ignored on purpose (text + image pairs are made too). Each pass
    over a fresh permutation pairs neighbours, so a sample is reused only once
    every other sample has been used as often.

    Raises:
        ValueError: pairs requested from a pool of fewer than 2 samples.
    """
    if num_pairs <= 0:
        return []
    if pool_size < 2:
        raise ValueError(f"need at least 2 samples to pair, got {pool_size}")
    rng = random.Random(seed)
    pairs: list[tuple[int, int]] = []
    while len(pairs) < num_pairs:
        perm = list(range(pool_size))
        rng.shuffle(perm)
        for k in range(0, pool_size - 1, 2):
            pairs.append((perm[k], perm[k + 1]))
            if len(pairs) == num_pairs:
                break
    return pairs
