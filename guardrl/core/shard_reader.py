"""Reading guardrl's Parquet shards: manifests checked, every shard's size, sha256, schema and row count
verified before a row is trusted (the writers are in :mod:`guardrl.core.shards`; see its docstring).

Reading (validates the manifest, each shard's sha256, row count and Arrow schema)::

    read_manifest(d)                  # dict; raises ShardError if absent/incomplete/wrong version
    iter_samples(d)                   # Iterator[Sample]   (d = a shard dir, or a split dir + split=)
    read_table(d)                     # pyarrow.Table with ARROW_SCHEMA
    shard_files(d)                    # [Path, ...] for datasets.load_dataset("parquet", data_files=...)
    load_hf_dataset(d)                # datasets.Dataset (verified first)
    verify(d) / iter_batches(d)       # checks only / pyarrow RecordBatches
    split_names(d), resolve(d, split) # the splits of a split dir / the shard dir of one split
    iter_parquet_batches(file)        # any Parquet file, one row group in memory at a time
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from guardrl.core.provenance import sha256_file
from guardrl.core.schema import ARROW_SCHEMA, SCHEMA_VERSION, Sample, SchemaError

MANIFEST = "manifest.json"
FORMAT = "guardrl.shards"
SPLITS_FORMAT = "guardrl.splits"
SHARD_PATTERN = "part-{:05d}.parquet"


class ShardError(RuntimeError):
    """An output folder a reader must not trust; the message names the folder or file."""


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Load and check ``path/manifest.json`` (a shard dir or a split dir).

    Raises:
        ShardError: no manifest (an incomplete or killed run), unreadable JSON, an unknown format,
            or a schema version this code cannot read.
    """
    path = Path(path)
    mf = path / MANIFEST
    if not path.is_dir():
        raise ShardError(f"{path}: no such folder (was the stage that writes it completed?)")
    if not mf.is_file():
        raise ShardError(f"{mf}: missing: {path} is not a complete guardrl output (killed or unfinished run?)")
    try:
        m = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ShardError(f"{mf}: unreadable manifest: {exc}") from exc
    if not isinstance(m, dict) or m.get("format") not in (FORMAT, SPLITS_FORMAT):
        raise ShardError(f"{mf}: not a guardrl manifest (format={m.get('format') if isinstance(m, dict) else None!r})")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise ShardError(f"{mf}: schema version {m.get('schema_version')!r}, this guardrl reads {SCHEMA_VERSION}")
    return m


def split_names(path: str | Path) -> list[str]:
    """The splits of a split dir (``[]`` for a plain shard dir)."""
    m = read_manifest(path)
    return list(m["splits"]) if m["format"] == SPLITS_FORMAT else []


def resolve(path: str | Path, split: str | None = None) -> Path:
    """The shard dir for ``path`` (a shard dir) or ``path`` + ``split`` (a split dir)."""
    path = Path(path)
    m = read_manifest(path)
    if m["format"] == SPLITS_FORMAT:
        if split is None:
            raise ShardError(f"{path} is a split dir; pass split= one of {list(m['splits'])}")
        if split not in m["splits"]:
            raise ShardError(f"{path}: no split {split!r}; splits are {list(m['splits'])}")
        return path / m["splits"][split]["dir"]
    if split is not None:
        raise ShardError(f"{path} is a single shard dir, not a split dir (split={split!r} given)")
    return path


def verify(path: str | Path, *, split: str | None = None, check_hashes: bool = True) -> dict[str, Any]:
    """Check a shard dir against its manifest; return the manifest.

    Checks that every listed shard exists, has the recorded size and sha256 (``check_hashes``), the
    guardrl Arrow schema and the recorded row count, and that no unlisted ``*.parquet`` file is present.

    Raises:
        ShardError: naming the offending file.
    """
    d = resolve(path, split)
    m = read_manifest(d)
    if m["format"] != FORMAT:
        raise ShardError(f"{d}: expected a shard dir")
    listed = {s["name"] for s in m["shards"]}
    extra = sorted(p.name for p in d.glob("*.parquet") if p.name not in listed)
    if extra:
        raise ShardError(f"{d}: parquet file(s) not in the manifest: {extra}")
    total = 0
    for s in m["shards"]:
        f = d / s["name"]
        if not f.is_file():
            raise ShardError(f"{f}: shard listed in the manifest is missing")
        if f.stat().st_size != s["bytes"]:
            raise ShardError(f"{f}: size {f.stat().st_size} != {s['bytes']} in the manifest")
        if check_hashes and sha256_file(f) != s["sha256"]:
            raise ShardError(f"{f}: sha256 mismatch with the manifest (file changed or corrupt)")
        try:
            meta = pq.read_metadata(f)
            schema = pq.read_schema(f)
        except (OSError, pa.ArrowException) as exc:
            raise ShardError(f"{f}: not a readable Parquet file: {exc}") from exc
        if not schema.remove_metadata().equals(ARROW_SCHEMA.remove_metadata()):
            raise ShardError(f"{f}: schema differs from guardrl's ARROW_SCHEMA:\n{schema}")
        if meta.num_rows != s["rows"]:
            raise ShardError(f"{f}: {meta.num_rows} rows, manifest says {s['rows']}")
        total += meta.num_rows
    if total != m["num_rows"]:
        raise ShardError(f"{d}: shards hold {total} rows, manifest says {m['num_rows']}")
    return m


def shard_files(path: str | Path, *, split: str | None = None, check: bool = True) -> list[Path]:
    """The shard paths in order (for ``datasets.load_dataset("parquet", data_files=...)``)."""
    d = resolve(path, split)
    m = verify(d) if check else read_manifest(d)
    return [d / s["name"] for s in m["shards"]]


def iter_parquet_batches(path: str | Path, *, batch_size: int = 256,
                         columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Stream any Parquet file one row group at a time, in batches of at most ``batch_size`` rows.

    Memory stays at about one row group: ``ParquetFile.iter_batches`` with pre-buffering keeps the
    buffers of every row group already read until the file is closed (RSS grows with the file).
    """
    pf = pq.ParquetFile(str(path), pre_buffer=False)
    try:
        cols = list(columns) if columns else None
        for rg in range(pf.num_row_groups):
            table = pf.read_row_group(rg, columns=cols)
            yield from table.to_batches(max_chunksize=batch_size)
            del table
    finally:
        pf.close()


def iter_batches(path: str | Path, *, split: str | None = None, batch_size: int = 256,
                 columns: Sequence[str] | None = None, check_hashes: bool = True) -> Iterator[pa.RecordBatch]:
    """Stream record batches of a (verified) shard dir."""
    d = resolve(path, split)
    m = verify(d, check_hashes=check_hashes)
    for s in m["shards"]:
        yield from iter_parquet_batches(d / s["name"], batch_size=batch_size, columns=columns)


def iter_samples(path: str | Path, *, split: str | None = None, batch_size: int = 256,
                 check_hashes: bool = True) -> Iterator[Sample]:
    """Stream :class:`Sample` s from a verified shard dir (each one re-validated).

    Raises:
        ShardError: the folder fails :func:`verify`.
        SchemaError: a row breaks the schema's rules (names the shard and row).
    """
    d = resolve(path, split)
    for name, i, row in _iter_rows(d, batch_size=batch_size, check_hashes=check_hashes):
        try:
            yield Sample.from_row(row)
        except (SchemaError, ValueError) as exc:
            raise SchemaError(f"{d / name}:row {i}: {exc}") from exc


def _iter_rows(d: Path, *, batch_size: int, check_hashes: bool) -> Iterator[tuple[str, int, dict[str, Any]]]:
    m = verify(d, check_hashes=check_hashes)
    for s in m["shards"]:
        i = 0
        for batch in iter_parquet_batches(d / s["name"], batch_size=batch_size):
            for row in batch.to_pylist():
                yield s["name"], i, row
                i += 1


def read_table(path: str | Path, *, split: str | None = None, columns: Sequence[str] | None = None,
               check_hashes: bool = True) -> pa.Table:
    """The whole (verified) shard dir as one Arrow table with ``ARROW_SCHEMA`` (or ``columns``)."""
    d = resolve(path, split)
    m = verify(d, check_hashes=check_hashes)
    cols = list(columns) if columns else None
    tables = [pq.read_table(d / s["name"], columns=cols) for s in m["shards"]]
    if not tables:
        schema = ARROW_SCHEMA if cols is None else pa.schema([ARROW_SCHEMA.field(c) for c in cols])
        return schema.empty_table()
    return pa.concat_tables(tables)


def load_hf_dataset(path: str | Path, *, split: str | None = None, **kwargs: Any):
    """A ``datasets.Dataset`` over a verified shard dir (``load_dataset("parquet", ...)``)."""
    import datasets

    files = [str(p) for p in shard_files(path, split=split)]
    return datasets.load_dataset("parquet", data_files={"train": files}, split="train", **kwargs)
