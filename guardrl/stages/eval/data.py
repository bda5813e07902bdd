"""Benchmark sets for evaluation: guardrl Parquet shard dirs or plain JSONL files.

A *benchmark spec* is a path string or a mapping ``{path, name, split, limit}``:

* a guardrl shard dir (``manifest.json`` + ``part-*.parquet``; a split dir needs ``split``),
  read and verified with :func:`guardrl.core.shards.iter_samples`. A dir holding several
  ``source`` values is split into one benchmark per source (data_prep writes the 14 benchmarks
  that way); ``name`` renames a single-source dir.
* a ``.jsonl`` file with one object per line: ``prompt``, ``response`` (optional / null),
  ``image`` (optional: a path, relative to the file, or a list of paths), ``label_prompt``,
  ``label_response`` (``harmful`` / ``unharmful`` / null; aliases as in
  :func:`guardrl.core.schema.normalize_label`), optional ``id``. The benchmark is named after the file.

Images go through :func:`guardrl.core.images.prepare_image` (pixel limit, verify, resize). Bad rows
raise :class:`BenchmarkError` naming file and line; nothing is dropped silently. ``limit`` keeps
the first N samples of each benchmark (quick runs).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from guardrl.core.schema import SchemaError, normalize_label
from guardrl.stages.eval.scoring import EvalItem


class BenchmarkError(ValueError):
    """A benchmark file or row that cannot be used; the message names file and row."""


def _spec(spec: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(spec, str | Path):
        return {"path": str(spec)}
    if "path" not in spec:
        raise BenchmarkError(f"benchmark spec {dict(spec)} has no 'path'")
    unknown = set(spec) - {"path", "name", "split", "limit"}
    if unknown:
        raise BenchmarkError(f"benchmark spec {dict(spec)}: unknown keys {sorted(unknown)} (path, name, split, limit)")
    return dict(spec)


def _clean_name(name: str) -> str:
    return name.replace("/", "_").strip() or "benchmark"


def _jsonl_items(path: Path, name: str, limit: int | None) -> list[EvalItem]:
    from guardrl.core.images import ImageError, prepare_image

    items: list[EvalItem] = []
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise BenchmarkError(f"{path}: cannot open: {exc}") from exc
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if limit is not None and len(items) >= limit:
                break
            if not line.strip():
                continue
            at = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchmarkError(f"{at}: invalid JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise BenchmarkError(f"{at}: expected a JSON object")
            prompt = row.get("prompt") or ""
            response = row.get("response")
            if not isinstance(prompt, str) or (response is not None and not isinstance(response, str)):
                raise BenchmarkError(f"{at}: 'prompt'/'response' must be strings")
            try:
                lp = normalize_label(row.get("label_prompt"), where=f"{at} label_prompt")
                lr = normalize_label(row.get("label_response"), where=f"{at} label_response")
            except SchemaError as exc:
                raise BenchmarkError(str(exc)) from exc
            if lp is None and lr is None:
                raise BenchmarkError(f"{at}: neither label_prompt nor label_response")
            if lr is not None and response is None:
                raise BenchmarkError(f"{at}: label_response without a response")
            raw_images = row.get("image") or []
            paths = [raw_images] if isinstance(raw_images, str) else list(raw_images)
            try:
                images = tuple(prepare_image(path.parent / p, where=f"{at} image {p}") for p in paths)
            except ImageError as exc:
                raise BenchmarkError(str(exc)) from exc
            if not prompt.strip() and not images:
                raise BenchmarkError(f"{at}: empty prompt and no image")
            items.append(EvalItem(str(row.get("id") or f"{name}:{lineno}"), name, prompt, response, images, lp, lr))
    return items


def _parquet_items(path: Path, name: str | None, split: str | None, limit: int | None) -> dict[str, list[EvalItem]]:
    from guardrl.core.shards import ShardError, iter_samples

    out: dict[str, list[EvalItem]] = {}
    try:
        for s in iter_samples(path, split=split):
            bench = _clean_name(name or s.source)
            bucket = out.setdefault(bench, [])
            if limit is not None and len(bucket) >= limit:
                continue
            bucket.append(EvalItem(s.id, bench, s.request, s.response, tuple(s.images), s.label_request,
                                   s.label_response, s.modality, s.source, dict(s.provenance)))
    except (ShardError, SchemaError) as exc:
        raise BenchmarkError(f"{path}: {exc}") from exc
    if name is None:
        return out
    return {_clean_name(name): [it for items in out.values() for it in items][: limit or None]}


def load_benchmarks(specs: Iterable[str | Path | Mapping[str, Any]]) -> dict[str, list[EvalItem]]:
    """Read every spec into ``{benchmark name: items}`` (insertion order = spec order).

    Raises:
        BenchmarkError: a missing path, a bad row, a duplicate benchmark name.
    """
    sets: dict[str, list[EvalItem]] = {}
    for raw in specs:
        spec = _spec(raw)
        path = Path(spec["path"])
        limit = spec.get("limit")
        if path.is_dir():
            if spec.get("name") is None and (path / "manifest.json").is_file():
                found = _parquet_items(path, None, spec.get("split"), limit)
            else:
                found = _parquet_items(path, spec.get("name"), spec.get("split"), limit)
        elif path.is_file() and path.suffix == ".jsonl":
            name = _clean_name(spec.get("name") or path.stem)
            found = {name: _jsonl_items(path, name, limit)}
        else:
            raise BenchmarkError(f"benchmark {path}: not a guardrl shard dir or a .jsonl file")
        for name, items in found.items():
            if name in sets:
                raise BenchmarkError(f"benchmark name {name!r} appears twice (give one a 'name')")
            if not items:
                raise BenchmarkError(f"benchmark {name!r} ({path}) has no samples")
            sets[name] = items
    if not sets:
        raise BenchmarkError("no benchmarks given")
    return sets
