"""Where an output came from: file hashes, the guardrl version and the git commit (one place for both).

Shard manifests (:mod:`guardrl.core.shards`) and export model cards (:mod:`guardrl.stages.export.model_card`) record
these; nothing else computes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
from pathlib import Path
from typing import Any


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte blocks (1 MiB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_commit() -> str | None:
    """The commit of the checkout guardrl runs from, or ``None`` (an installed wheel, no git)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            return out.stdout.strip() or None
    return None


def code_version() -> dict[str, Any]:
    """``{"guardrl": version, "git_commit": commit or None}`` (the installed version, else "unknown")."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("guardrl")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"guardrl": version, "git_commit": git_commit()}
