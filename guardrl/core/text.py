"""Small text helpers of the templated (synthetic) traces every task writes for bundled data. Pure module."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

from guardrl.core.schema import HARMFUL


def pick(key: str, salt: str, options: Sequence[str]) -> str:
    """One of ``options``, chosen by a hash of ``salt`` and ``key``: stable across rebuilds and processes."""
    h = int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:4], "big")
    return options[h % len(options)]


def one_line(text: str, limit: int, drop: Iterable[str] = ()) -> str:
    """``text`` on one line (whitespace collapsed), each of ``drop`` (a format's tags) removed, angle brackets
    and double quotes replaced, cut at a word boundary to at most ``limit`` characters (with an ellipsis)."""
    s = " ".join(text.split())
    for tag in drop:
        s = s.replace(tag, " ")
    s = s.replace("<", "(").replace(">", ")").replace('"', "'")
    if len(s) > limit:
        s = s[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"
    return s


def topic(category: str | None, label: str | None) -> str | None:
    """A short human phrase for a source category / harm type.

    ``"cooking_vs_chemical_weapon"`` (a benign/harmful pair) gives ``"chemical weapon"`` for a harmful
    row and ``"cooking"`` for an unharmful one; ``"A; B; C; D"`` (a harm taxonomy path) keeps the two
    most specific parts; underscores become spaces.
    """
    if not category or not str(category).strip():
        return None
    c = str(category).strip()
    if "_vs_" in c:
        benign, harmful = c.split("_vs_", 1)
        c = harmful if label == HARMFUL else benign
    parts = [p.strip() for p in c.split(";") if p.strip()]
    if len(parts) > 2:
        parts = parts[-2:]
    c = " and ".join(parts)
    c = re.sub(r"[_\s]+", " ", c).strip().lower()
    c = c.replace("<", "(").replace(">", ")")
    return c[:80] or None
