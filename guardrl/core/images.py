"""Safe image handling: every image that enters a guardrl shard goes through :func:`prepare_image`.

Steps, each failure raised as :class:`ImageError` naming where the image came from (file, row):

1. size checks on the encoded bytes (empty file, more than ``max_bytes``);
2. header only (``Image.open`` is lazy): format must be an allowed raster format, and
   ``width x height`` must not exceed ``limit_pixels`` -- a decompression bomb (e.g. a 30000x30000
   PNG header over a few bytes of data) is refused before a single pixel is decoded;
3. ``verify()`` (structure, CRCs), then a full decode on a fresh handle (catches truncation);
4. EXIF orientation applied, mode converted to RGB (alpha composited on white), resized to at most
   ``max_pixels`` keeping the aspect ratio;
5. re-encoded **only when needed**: a JPEG/PNG already RGB/L, unrotated, within ``max_pixels`` and
   single-frame is kept byte for byte; otherwise lossy sources become JPEG (quality 95) and
   lossless ones PNG.

Pillow's global ``Image.MAX_IMAGE_PIXELS`` is not relied on (nor changed): the limit is checked here
and Pillow's own bomb warning is turned into an error while decoding.

This module is pure: Pillow only, no torch / ray / verl.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from guardrl.core.schema import SchemaError

#: default storage cap (pixels) -- Qwen2.5-VL's processor default ``max_pixels`` is 12.8M; guard
#: training uses far fewer vision tokens, so images are stored at <= ~1 MP (1280 * 28 * 28).
DEFAULT_MAX_PIXELS = 1280 * 28 * 28
#: refuse to decode anything larger than this (decompression bomb guard)
DEFAULT_LIMIT_PIXELS = 64_000_000
DEFAULT_MAX_BYTES = 50 << 20
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
_KEEP_FORMATS = {"JPEG": {"RGB", "L"}, "PNG": {"RGB", "L"}}
_LOSSY = {"JPEG", "WEBP"}


class ImageError(SchemaError):
    """An image that cannot be stored; the message names its origin (file, row)."""


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`prepare_image` did: final size/format and whether the bytes were re-encoded."""

    width: int
    height: int
    format: str
    reencoded: bool
    source_format: str


def fit_within(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest ``(w, h)`` with the same aspect ratio and ``w * h <= max_pixels`` (no upscaling).

    >>> fit_within(2000, 1000, 500_000)
    (1000, 500)
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"bad size {width}x{height}")
    if width * height <= max_pixels:
        return width, height
    scale = (max_pixels / (width * height)) ** 0.5
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    while w * h > max_pixels:  # float rounding
        if w >= h:
            w -= 1
        else:
            h -= 1
    return w, h


def read_image_file(path: str | Path, *, where: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read an image file's bytes with size checks (no decoding).

    Raises:
        ImageError: missing, empty or too large (naming ``where`` or the path).
    """
    path = Path(path)
    at = where or str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"{at}: cannot read image file {path}: {exc.strerror or exc}") from exc
    if size == 0:
        raise ImageError(f"{at}: empty image file (0 bytes): {path}")
    if size > max_bytes:
        raise ImageError(f"{at}: image file {path} is {size} bytes (> {max_bytes})")
    return path.read_bytes()


def _open(data: bytes, at: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError(f"{at}: not a recognised image ({len(data)} bytes)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{at}: refused, decompression bomb: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{at}: unreadable image header: {exc}") from exc


def decode_image(
    data: bytes,
    *,
    where: str = "image",
    limit_pixels: int = DEFAULT_LIMIT_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    formats: frozenset[str] = ALLOWED_FORMATS,
) -> Image.Image:
    """Decode encoded bytes safely into a fully loaded PIL image (see the module docstring).

    Raises:
        ImageError: empty, too large, unknown format, over ``limit_pixels``, corrupt or truncated.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageError(f"{where}: image must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ImageError(f"{where}: empty image (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(f"{where}: image is {len(data)} bytes (> {max_bytes})")
    img = _open(data, where)
    fmt = img.format or "?"
    if fmt not in formats:
        raise ImageError(f"{where}: image format {fmt} not allowed (allowed: {sorted(formats)})")
    w, h = img.size
    if w <= 0 or h <= 0 or w * h > limit_pixels:
        raise ImageError(
            f"{where}: image is {w}x{h} = {w * h} pixels, over the limit of {limit_pixels} (decompression bomb?)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img.verify()
            img = _open(data, where)  # verify() leaves the handle unusable
            saved, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
            try:
                img.load()
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = saved
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"{where}: refused, decompression bomb: {exc}") from exc
        except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as exc:
            raise ImageError(f"{where}: corrupt or truncated {fmt} image: {exc}") from exc
    img.format = fmt  # type: ignore[misc] - keep the source format after reopening
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGB", "L"):
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")


def encode_image(img: Image.Image, fmt: str = "PNG", *, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality, optimize=False)
    else:
        img.save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def prepare_image_info(
    src: bytes | str | Path,
    *,
    where: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    limit_pixels: int = DEFAULT_LIMIT_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[bytes, ImageInfo]:
    """Validate and normalise one image; return the bytes to store and what was done.

    Args:
        src: encoded bytes, or a path to an image file.
        where: origin for error messages (``"data.json:12 image"``); default the path or ``"image"``.
        max_pixels: stored images have at most this many pixels (aspect kept, never upscaled).
        limit_pixels: refuse to decode images larger than this.
        max_bytes: refuse encoded images larger than this.

    Raises:
        ImageError: see :func:`decode_image`.
    """
    if isinstance(src, str | Path):
        at = where or str(src)
        data = read_image_file(src, where=at, max_bytes=max_bytes)
    else:
        at = where or "image"
        data = bytes(src)
    img = decode_image(data, where=at, limit_pixels=limit_pixels, max_bytes=max_bytes)
    fmt = img.format or "?"
    orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
    frames = getattr(img, "n_frames", 1)
    keep = (
        fmt in _KEEP_FORMATS
        and img.mode in _KEEP_FORMATS[fmt]
        and orientation in (None, 1)
        and frames == 1
        and img.width * img.height <= max_pixels
    )
    if keep:
        return data, ImageInfo(img.width, img.height, fmt, False, fmt)
    try:
        out = ImageOps.exif_transpose(img) if orientation not in (None, 1) else img
        out = _to_rgb(out)
        size = fit_within(out.width, out.height, max_pixels)
        if size != out.size:
            out = out.resize(size, Image.Resampling.LANCZOS)
        target = "JPEG" if fmt in _LOSSY else "PNG"
        if target == "JPEG" and out.mode not in ("RGB", "L"):
            out = out.convert("RGB")
        encoded = encode_image(out, target)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{at}: cannot convert {fmt} image: {exc}") from exc
    return encoded, ImageInfo(out.width, out.height, target, True, fmt)


def prepare_image(src: bytes | str | Path, **kwargs) -> bytes:
    """:func:`prepare_image_info` without the info: the bytes to store in a shard's ``images`` column."""
    return prepare_image_info(src, **kwargs)[0]


def open_stored(data: bytes, *, where: str = "image", limit_pixels: int = DEFAULT_LIMIT_PIXELS) -> Image.Image:
    """Decode an image read back from a shard (same safety checks) as an RGB PIL image."""
    return _to_rgb(decode_image(data, where=where, limit_pixels=limit_pixels)).convert("RGB")
