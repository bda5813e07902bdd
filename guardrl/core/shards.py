"""Parquet shards + manifest: the one on-disk format every guardrl stage reads and writes.

A **shard dir** is a folder holding ``part-00000.parquet``, ``part-00001.parquet``, ... (each row
follows :data:`guardrl.core.schema.ARROW_SCHEMA`) and ``manifest.json``. A **split dir** is a folder
holding one shard dir per split (``train/``, ``dev/``, ...) and a ``manifest.json`` that lists them.

Writing (streamed, size-bounded, atomic)::

    from guardrl.core.shards import ShardWriter
    with ShardWriter(out_dir, stage="data_prep.guard_mini", config={...}, on_bad="skip") as w:
        for i, raw in enumerate(rows):
            with w.guard(f"{path}:{i + 1}"):      # bad input: raise naming the row, or skip + count
                w.write(convert(raw))              # a Sample (or a row dict)
            # or count a skip yourself:  w.skip(f"{path}:{i + 1}", "empty prompt")
            # or report an exception caught elsewhere:  w.bad(where, exc)

Rows are buffered into row groups (``row_group_bytes``) and streamed into the current shard, which
is closed once it passes ``max_shard_bytes``. Each shard is written under a temporary name and
renamed when closed; everything happens inside a temporary folder beside ``out_dir``, and only when
the ``with`` block ends without an exception is ``manifest.json`` written (last) and the folder
swapped into place. A killed run leaves ``out_dir`` absent (or the previous complete version) and a
hidden ``.NAME.*.tmp`` folder that no reader accepts (the next writer removes it once its process is
gone). With ``on_bad="error"`` (default) the first bad row raises :class:`BadInputError` naming
the row; with ``on_bad="skip"`` it is counted by reason in the manifest (nothing is silently dropped).

Splits::

    with SplitWriter(out_dir, splits=("train", "dev"), stage=..., config=...) as sw:
        sw["train"].write(sample)            # each split is a ShardWriter; one atomic swap for all

Reading: :mod:`guardrl.core.shard_reader` (its functions are importable from here too).

The manifest holds: format, schema version, stage, creation time, code version (guardrl version +
git commit when available), the config, row counts per source x modality x label (request and
response), skipped rows per reason (with the first examples' locations), and each shard's name,
rows, bytes and sha256.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from guardrl.core.atomic import _fsync_dir, atomic_write_text
from guardrl.core.provenance import code_version, sha256_file
from guardrl.core.schema import ARROW_SCHEMA, SCHEMA_VERSION, Sample, SchemaError
from guardrl.core.shard_reader import (
    FORMAT,
    MANIFEST,
    SHARD_PATTERN,
    SPLITS_FORMAT,
    ShardError,
    iter_batches,
    iter_parquet_batches,
    iter_samples,
    load_hf_dataset,
    read_manifest,
    read_table,
    resolve,
    shard_files,
    split_names,
    verify,
)

# the readers live in guardrl.core.shard_reader; importing them from here keeps working
__all__ = [
    "BAD_INPUT_ERRORS", "FORMAT", "MANIFEST", "SHARD_PATTERN", "SPLITS_FORMAT", "BadInputError", "ShardError",
    "ShardWriter", "SplitWriter", "code_version", "iter_batches", "iter_parquet_batches", "iter_samples",
    "load_hf_dataset", "read_manifest", "read_table", "resolve", "sha256_file", "shard_files", "split_names",
    "verify", "write_samples",
]

OnBad = Literal["error", "skip"]
_PID_FILE = ".writer.pid"
_MAX_SKIP_EXAMPLES = 100
_DICT_COLUMNS = ("source", "modality", "label_request", "label_response")  # low-cardinality columns


class BadInputError(SchemaError):
    """A source row that cannot be converted; the message starts with its location (file:row)."""


#: exceptions :meth:`ShardWriter.guard` treats as bad input (anything else is a bug and propagates).
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (SchemaError, UnicodeError, KeyError)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_tmp(out_dir: Path) -> None:
    """Remove ``.NAME.*.tmp`` folders left by writers that were killed (their process is gone)."""
    if not out_dir.parent.is_dir():
        return
    for p in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):
        pid_file = p / _PID_FILE
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue  # not ours
        if not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _nested_counter() -> defaultdict:
    return defaultdict(lambda: defaultdict(lambda: {"total": 0, "request": Counter(), "response": Counter()}))


class ShardWriter:
    """Stream samples into size-bounded Parquet shards; publish the folder atomically on success.

    Args:
        out_dir: the shard dir to create (replaced atomically if it exists and ``overwrite``).
        stage: who wrote it (e.g. ``"data_prep.guard_mini"``), recorded in the manifest.
        config: JSON-serialisable settings recorded in the manifest.
        max_shard_bytes: a shard is closed once its file passes this size.
        row_group_bytes: rows are buffered up to about this many bytes, then written as a row group.
        on_bad: ``"error"``: a bad row raises :class:`BadInputError`; ``"skip"``: it is counted.
        overwrite: replace an existing ``out_dir``; if False an existing one raises ``FileExistsError``.
        compression: Parquet codec.

    Attributes:
        report: a stage's own summary; when set (before the ``with`` block ends) the manifest holds it
            under the stage's name (``manifest["reject"]``, ``manifest["augment"]``).

    Raises:
        BadInputError: from :meth:`write` / :meth:`guard` with ``on_bad="error"``.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        stage: str,
        config: Mapping[str, Any] | None = None,
        max_shard_bytes: int = 256 << 20,
        row_group_bytes: int = 16 << 20,
        on_bad: OnBad = "error",
        overwrite: bool = True,
        compression: str = "zstd",
        _atomic: bool = True,
    ) -> None:
        if on_bad not in ("error", "skip"):
            raise ValueError(f"on_bad must be 'error' or 'skip', got {on_bad!r}")
        if max_shard_bytes <= 0 or row_group_bytes <= 0:
            raise ValueError("max_shard_bytes and row_group_bytes must be > 0")
        self.out_dir = Path(out_dir)
        self.stage = stage
        self.config = dict(config or {})
        json.dumps(self.config)  # fail early on a config the manifest cannot hold
        self.max_shard_bytes = max_shard_bytes
        self.row_group_bytes = min(row_group_bytes, max_shard_bytes)  # a row group never outgrows a shard
        self.on_bad: OnBad = on_bad
        self.overwrite = overwrite
        self.compression = compression
        self._atomic = _atomic
        self._tmp: Path | None = None
        self._buf: list[dict[str, Any]] = []
        self._buf_bytes = 0
        self._sink: pa.OSFile | None = None
        self._pq: pq.ParquetWriter | None = None
        self._shard_rows = 0
        self._shards: list[dict[str, Any]] = []
        self._counts = _nested_counter()
        self._skipped: Counter[str] = Counter()
        self._skip_examples: list[dict[str, str]] = []
        self._ids: set[str] = set()
        self.num_rows = 0
        self.report: dict[str, Any] | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> ShardWriter:
        if self._atomic:
            if self.out_dir.exists() and not self.overwrite:
                raise FileExistsError(f"{self.out_dir} exists (overwrite=False)")
            self.out_dir.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_tmp(self.out_dir)
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", suffix=".tmp", dir=self.out_dir.parent))
            (self._tmp / _PID_FILE).write_text(str(os.getpid()))
        else:  # inside a SplitWriter's temporary folder
            self.out_dir.mkdir(parents=True, exist_ok=False)
            self._tmp = self.out_dir
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def work_dir(self) -> Path:
        if self._tmp is None or self._closed:
            raise RuntimeError("ShardWriter used outside its `with` block")
        return self._tmp

    # -- writing -----------------------------------------------------------------------------------
    def write(self, sample: Sample | Mapping[str, Any], *, where: str = "") -> bool:
        """Add one sample (a :class:`Sample` or a row dict in ``ARROW_SCHEMA`` layout).

        Returns True if written, False if skipped (``on_bad="skip"``).

        Raises:
            BadInputError: an invalid row or a duplicate id, with ``on_bad="error"``.
        """
        self.work_dir  # noqa: B018 - raises outside the with block
        try:
            s = sample if isinstance(sample, Sample) else Sample.from_row(dict(sample))
            if s.id in self._ids:
                raise SchemaError(f"duplicate id {s.id!r}")
        except BAD_INPUT_ERRORS as exc:
            self.bad(where or f"id={_id_of(sample)!r}", exc)
            return False
        self._ids.add(s.id)
        row = s.to_row()
        self._buf.append(row)
        self._buf_bytes += _row_bytes(row)
        c = self._counts[s.source][s.modality]
        c["total"] += 1
        c["request"][s.label_request or "none"] += 1
        c["response"][s.label_response or "none"] += 1
        self.num_rows += 1
        if self._buf_bytes >= self.row_group_bytes:
            self._flush()
        return True

    def skip(self, where: str, reason: str) -> None:
        """Count one source row as skipped (recorded in the manifest by ``reason``)."""
        reason = " ".join(str(reason).split())[:300] or "unspecified"
        key = _reason_key(reason)
        self._skipped[key] += 1
        if len(self._skip_examples) < _MAX_SKIP_EXAMPLES:
            self._skip_examples.append({"where": where, "reason": reason})

    @contextlib.contextmanager
    def guard(self, where: str) -> Iterator[None]:
        """Convert one source row inside this block; bad input raises naming ``where`` or is skipped."""
        try:
            yield
        except BAD_INPUT_ERRORS as exc:
            self.bad(where, exc)

    def bad(self, where: str, exc: BaseException) -> None:
        """Report a bad source row: raise :class:`BadInputError` (``on_bad="error"``) or count a skip."""
        if isinstance(exc, BadInputError) and self.on_bad == "error":
            raise exc  # already located by an inner guard
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        if isinstance(exc, KeyError):
            msg = f"missing field {msg!r}"
        elif isinstance(exc, UnicodeError):
            msg = f"not valid UTF-8 ({exc})"
        if msg.startswith(where):
            msg = msg[len(where) :].lstrip(": ")
        if self.on_bad == "skip":
            self.skip(where, msg)
            return
        raise BadInputError(f"{where}: {msg}") from exc

    def _flush(self) -> None:
        if not self._buf:
            return
        if self._pq is None:
            name = SHARD_PATTERN.format(len(self._shards))
            self._sink = pa.OSFile(str(self.work_dir / f".{name}.tmp"), "wb")
            self._pq = pq.ParquetWriter(self._sink, ARROW_SCHEMA, compression=self.compression,
                                        use_dictionary=list(_DICT_COLUMNS))
            self._shard_rows = 0
        table = pa.Table.from_pylist(self._buf, schema=ARROW_SCHEMA)
        self._pq.write_table(table, row_group_size=len(self._buf))
        self._shard_rows += len(self._buf)
        self._buf.clear()
        self._buf_bytes = 0
        del table
        if self._sink is not None and self._sink.tell() >= self.max_shard_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        if self._pq is None:
            return
        self._pq.close()
        assert self._sink is not None
        self._sink.close()
        name = SHARD_PATTERN.format(len(self._shards))
        tmp = self.work_dir / f".{name}.tmp"
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.work_dir / name)
        path = self.work_dir / name
        self._shards.append(
            {"name": name, "rows": self._shard_rows, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
        )
        self._pq = None
        self._sink = None
        self._shard_rows = 0

    # -- finishing ---------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The manifest as it stands (complete after :meth:`close`)."""
        counts = {
            src: {
                mod: {"total": c["total"], "request": dict(sorted(c["request"].items())),
                      "response": dict(sorted(c["response"].items()))}
                for mod, c in sorted(mods.items())
            }
            for src, mods in sorted(self._counts.items())
        }
        out = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "stage": self.stage,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "code_version": code_version(),
            "config": self.config,
            "num_rows": self.num_rows,
            "counts": counts,
            "skipped": {
                "total": sum(self._skipped.values()),
                "by_reason": dict(sorted(self._skipped.items())),
                "examples": list(self._skip_examples),
            },
            "shards": list(self._shards),
        }
        if self.report is not None:
            out[self.stage] = self.report
        return out

    def close(self) -> Path:
        """Flush, close the last shard, write ``manifest.json`` last and publish the folder."""
        if self._closed:
            return self.out_dir
        self._flush()
        self._close_shard()
        work = self.work_dir
        manifest = self.manifest()
        atomic_write_text(work / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        (work / _PID_FILE).unlink(missing_ok=True)
        _fsync_dir(work)
        if self._atomic:
            _publish(work, self.out_dir, overwrite=self.overwrite)
        self._closed = True
        return self.out_dir

    def abort(self) -> None:
        """Drop everything written so far (the previous ``out_dir``, if any, is untouched)."""
        with contextlib.suppress(Exception):
            if self._pq is not None:
                self._pq.close()
            if self._sink is not None:
                self._sink.close()
        if self._tmp is not None and self._atomic:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._closed = True


class SplitWriter:
    """Several :class:`ShardWriter` s (one per split) published together as one folder.

    ``out_dir/<split>/`` is a shard dir for each split; ``out_dir/manifest.json`` lists the splits
    (format ``guardrl.splits``). The whole ``out_dir`` is swapped into place in one rename.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        splits: Sequence[str] = ("train", "dev"),
        stage: str,
        config: Mapping[str, Any] | None = None,
        on_bad: OnBad = "error",
        overwrite: bool = True,
        **shard_kwargs: Any,
    ) -> None:
        if len(set(splits)) != len(splits) or not splits:
            raise ValueError(f"splits must be distinct and non-empty, got {splits!r}")
        self.out_dir = Path(out_dir)
        self.splits = tuple(splits)
        self.stage = stage
        self.config = dict(config or {})
        self.on_bad: OnBad = on_bad
        self.overwrite = overwrite
        self._kw = shard_kwargs
        self._tmp: Path | None = None
        self._writers: dict[str, ShardWriter] = {}

    def __enter__(self) -> SplitWriter:
        if self.out_dir.exists() and not self.overwrite:
            raise FileExistsError(f"{self.out_dir} exists (overwrite=False)")
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(self.out_dir)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", suffix=".tmp", dir=self.out_dir.parent))
        (self._tmp / _PID_FILE).write_text(str(os.getpid()))
        for split in self.splits:
            w = ShardWriter(self._tmp / split, stage=self.stage, config={**self.config, "split": split},
                            on_bad=self.on_bad, _atomic=False, **self._kw)
            self._writers[split] = w.__enter__()
        return self

    def __getitem__(self, split: str) -> ShardWriter:
        if split not in self._writers:
            raise KeyError(f"unknown split {split!r}; splits are {list(self.splits)}")
        return self._writers[split]

    def skip(self, where: str, reason: str, split: str | None = None) -> None:
        """Count a skip (in ``split``'s manifest; the first split's when the row had none yet)."""
        self[split or self.splits[0]].skip(where, reason)

    @contextlib.contextmanager
    def guard(self, where: str, split: str | None = None) -> Iterator[None]:
        with self[split or self.splits[0]].guard(where):
            yield

    def bad(self, where: str, exc: BaseException, split: str | None = None) -> None:
        self[split or self.splits[0]].bad(where, exc)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._tmp is not None
        if exc_type is not None:
            for w in self._writers.values():
                w.abort()
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        try:
            for w in self._writers.values():
                w.close()
            top = {
                "format": SPLITS_FORMAT,
                "schema_version": SCHEMA_VERSION,
                "stage": self.stage,
                "code_version": code_version(),
                "config": self.config,
                "splits": {s: {"dir": s, "num_rows": self._writers[s].num_rows} for s in self.splits},
            }
            atomic_write_text(self._tmp / MANIFEST, json.dumps(top, indent=2, ensure_ascii=False) + "\n")
            (self._tmp / _PID_FILE).unlink(missing_ok=True)
            _publish(self._tmp, self.out_dir, overwrite=self.overwrite)
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise


def _publish(tmp: Path, out_dir: Path, *, overwrite: bool) -> None:
    if out_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{out_dir} exists (overwrite=False)")
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
    _fsync_dir(out_dir.parent)


def write_samples(out_dir: str | Path, samples: Iterable[Sample | Mapping[str, Any]], *, stage: str,
                  config: Mapping[str, Any] | None = None, **kwargs: Any) -> Path:
    """Write an iterable of samples as one shard dir (convenience over :class:`ShardWriter`)."""
    with ShardWriter(out_dir, stage=stage, config=config, **kwargs) as w:
        for s in samples:
            w.write(s)
    return Path(out_dir)


def _id_of(sample: Any) -> str:
    return getattr(sample, "id", None) or (sample.get("id") if isinstance(sample, Mapping) else None) or "?"


def _reason_key(reason: str) -> str:
    """Group skip reasons: drop quoted values and numbers so one cause is one key."""
    import re

    key = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason)
    key = re.sub(r"\d+", "N", key)
    return key[:120]


def _row_bytes(row: Mapping[str, Any]) -> int:
    n = 64
    for k in ("id", "source", "request", "response", "target", "provenance"):
        v = row.get(k)
        if v:
            n += len(v)
    return n + sum(len(b) for b in row.get("images") or ())
