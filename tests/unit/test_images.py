"""guardrl.core.images: bombs, truncation, empty files refused with the origin named; re-encode only when needed."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from guardrl.core.images import (
    ImageError,
    decode_image,
    fit_within,
    open_stored,
    prepare_image,
    prepare_image_info,
)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _gradient(w=64, h=48, mode="RGB") -> Image.Image:
    img = Image.new("RGB", (w, h))
    img.putdata([(x * 4 % 256, y * 5 % 256, 128) for y in range(h) for x in range(w)])
    return img.convert(mode)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (8-bit RGB) followed by a tiny IDAT and IEND."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_fit_within_by_hand():
    # 2000x1000 = 2M px into 500K: scale sqrt(1/4) = 0.5 -> 1000x500
    assert fit_within(2000, 1000, 500_000) == (1000, 500)
    assert fit_within(10, 10, 100) == (10, 10)  # never upscales
    # 3000x200 = 600K into 60K: scale sqrt(0.1) = 0.316 -> 948x63 (59,724 px)
    assert fit_within(3000, 200, 60_000) == (948, 63)


def test_good_jpeg_and_png_kept_byte_for_byte():
    jpg = _encode(_gradient(), "JPEG", quality=90)
    png = _encode(_gradient(), "PNG")
    assert prepare_image(jpg) == jpg
    data, info = prepare_image_info(png)
    assert data == png and not info.reencoded and info.format == "PNG"


def test_resize_keeps_aspect_and_format():
    jpg = _encode(_gradient(400, 200), "JPEG")
    data, info = prepare_image_info(jpg, max_pixels=20_000)
    assert info.reencoded and info.format == "JPEG" and (info.width, info.height) == (200, 100)
    assert Image.open(io.BytesIO(data)).size == (200, 100)


def test_modes_converted():
    rgba = _gradient(mode="RGBA")
    rgba.putalpha(0)  # fully transparent -> white background
    data, info = prepare_image_info(_encode(rgba, "PNG"))
    img = Image.open(io.BytesIO(data))
    assert info.reencoded and img.mode == "RGB" and img.getpixel((3, 3)) == (255, 255, 255)
    webp = _encode(_gradient(), "WEBP")
    data, info = prepare_image_info(webp)
    assert info.format == "JPEG" and info.source_format == "WEBP"
    cmyk = _encode(_gradient(mode="CMYK"), "JPEG")
    assert Image.open(io.BytesIO(prepare_image(cmyk))).mode == "RGB"
    assert open_stored(prepare_image(_encode(_gradient(mode="P"), "PNG"))).mode == "RGB"


def test_truncated_jpeg_refused_naming_origin():
    jpg = _encode(_gradient(256, 256), "JPEG")
    with pytest.raises(ImageError, match=r"train.json:4 image: corrupt or truncated JPEG"):
        prepare_image(jpg[: len(jpg) // 2], where="train.json:4 image")


def test_decompression_bomb_header_refused_before_decoding():
    bomb = _png_header_only(30000, 30000)
    assert len(bomb) < 200
    with pytest.raises(ImageError, match=r"row 9: .*decompression bomb"):
        decode_image(bomb, where="row 9")
    # below Pillow's own threshold, guardrl's limit refuses it from the header
    with pytest.raises(ImageError, match=r"row 9: image is 9000x9000 = 81000000 pixels, over the limit"):
        decode_image(_png_header_only(9000, 9000), where="row 9")


def test_zero_byte_file_and_garbage(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty.jpg.*0 bytes"):
        prepare_image(empty)
    with pytest.raises(ImageError, match="not a recognised image"):
        prepare_image(b"hello world", where="x")
    with pytest.raises(ImageError, match="cannot read image file"):
        prepare_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="over the limit"):
        prepare_image(_encode(_gradient(100, 100), "PNG"), limit_pixels=5000)


def test_path_input(tmp_path):
    p = tmp_path / "a.png"
    p.write_bytes(_encode(_gradient(), "PNG"))
    assert prepare_image(p) == p.read_bytes()
