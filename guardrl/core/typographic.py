"""Typographic images: render a request's text into a picture (the FigStep-style attack on VLMs).

:func:`render_text` word-wraps text into a PNG with a :class:`TextStyle` (font, size, colours,
width, layout); :func:`style_for` picks one deterministically from a key (a sample id), so a rebuilt
corpus is byte-identical on the same machine. Fonts: DejaVu Sans / Serif / Mono (regular, bold)
when installed, otherwise Pillow's bundled scalable default font (``ImageFont.load_default(size)``).
Layouts: ``plain`` (just the text) and ``list`` (the text followed by an empty numbered list 1-3, as
in FigStep); both are used for harmful and unharmful text alike, so the layout says nothing about
the label.

Pure module: Pillow only.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/local/share/fonts")
_FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono.ttf",
)
#: (foreground, background) pairs, all high-contrast
PALETTES: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((0, 0, 0), (255, 255, 255)),
    ((20, 20, 120), (250, 248, 235)),
    ((255, 255, 255), (30, 30, 30)),
    ((120, 10, 10), (240, 240, 240)),
    ((10, 80, 30), (255, 255, 240)),
    ((255, 240, 120), (40, 40, 90)),
)
SIZES = (18, 22, 26, 30)
WIDTHS = (448, 512, 640)
LAYOUTS = ("plain", "list")


@dataclass(frozen=True)
class TextStyle:
    """How to draw the text. ``font`` is a font file name, or ``"pillow-default"``."""

    font: str = "pillow-default"
    size: int = 22
    fg: tuple[int, int, int] = (0, 0, 0)
    bg: tuple[int, int, int] = (255, 255, 255)
    width: int = 512
    margin: int = 24
    line_spacing: float = 1.25
    layout: str = "plain"
    max_height: int = 1536

    def to_dict(self) -> dict:
        return asdict(self)


@cache
def available_fonts() -> tuple[str, ...]:
    """Absolute paths of the DejaVu fonts found, or ``("pillow-default",)``."""
    found = []
    for name in _FONT_FILES:
        for d in _FONT_DIRS:
            p = Path(d) / name
            if p.is_file():
                found.append(str(p))
                break
    return tuple(found) or ("pillow-default",)


@cache
def _font(font: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if font == "pillow-default":
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(font, size=size)


def _h(key: str, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big")


def style_for(key: str) -> TextStyle:
    """A deterministic style for ``key`` (font, size, palette, width and layout chosen by hashing)."""
    fonts = available_fonts()
    fg, bg = PALETTES[_h(key, "palette") % len(PALETTES)]
    return TextStyle(
        font=fonts[_h(key, "font") % len(fonts)],
        size=SIZES[_h(key, "size") % len(SIZES)],
        fg=fg,
        bg=bg,
        width=WIDTHS[_h(key, "width") % len(WIDTHS)],
        layout=LAYOUTS[_h(key, "layout") % len(LAYOUTS)],
    )


def wrap(text: str, font, max_width: float) -> list[str]:
    """Greedy word wrap by rendered width; words longer than a line are split by characters.

    Paragraph breaks (newlines) are kept; runs of spaces collapse.
    """
    lines: list[str] = []
    for para in text.replace("\r\n", "\n").split("\n"):
        words = para.split()
        if not words:
            lines.append("")
            continue
        line = ""
        for word in words:
            cand = f"{line} {word}" if line else word
            if font.getlength(cand) <= max_width:
                line = cand
                continue
            if line:
                lines.append(line)
            while font.getlength(word) > max_width and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and font.getlength(word[:cut]) > max_width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return lines or [""]


def render_text(text: str, style: TextStyle | None = None) -> tuple[bytes, dict]:
    """Render ``text`` into a PNG; return ``(png_bytes, info)``.

    ``info`` holds the style, the number of lines drawn and ``truncated`` (True when the text did not
    fit in ``style.max_height`` and the last line drawn ends with an ellipsis).
    """
    style = style or TextStyle()
    font = _font(style.font, style.size)
    inner = style.width - 2 * style.margin
    lines = wrap(text, font, inner)
    if style.layout == "list":
        lines += ["", "1.", "2.", "3."]
    elif style.layout != "plain":
        raise ValueError(f"unknown layout {style.layout!r}; layouts are {LAYOUTS}")
    step = int(round(style.size * style.line_spacing))
    max_lines = max(1, (style.max_height - 2 * style.margin) // step)
    truncated = len(lines) > max_lines
    if truncated:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + " …") > inner:
            last = last[:-1]
        lines[-1] = (last + " …").strip()
    height = 2 * style.margin + step * len(lines)
    img = Image.new("RGB", (style.width, height), style.bg)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((style.margin, style.margin + i * step), line, font=font, fill=style.fg)
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=6)
    font_name = Path(style.font).name if style.font != "pillow-default" else "pillow-default"
    info = {**style.to_dict(), "font": font_name, "lines": len(lines), "truncated": truncated}
    return buf.getvalue(), info
