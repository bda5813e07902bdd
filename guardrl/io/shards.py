"""Parquet shards + manifest: the one on-disk format every guardrl stage reads and writes.

A **shard dir** is a folder holding ``part-00000.parquet``, ``part-00001.parquet``, ... (each row
follows :data:`guardrl.schema.ARROW_SCHEMA`) and ``manifest.json``. A **split dir** is a folder
holding one shard dir per split (``train/``, ``dev/``, ...) and a ``manifest.json`` that lists them.

Writing (streamed, size-bounded, atomic)::

    from guardrl.io.shards import ShardWriter
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

Reading (validates the manifest, each shard's sha256, row count and Arrow schema)::

    read_manifest(d)                  # dict; raises ShardError if absent/incomplete/wrong version
    iter_samples(d)                   # Iterator[Sample]   (d = a shard dir, or a split dir + split=)
    read_table(d)                     # pyarrow.Table with ARROW_SCHEMA
    shard_files(d)                    # [Path, ...] for datasets.load_dataset("parquet", data_files=...)
    load_hf_dataset(d)                # datasets.Dataset (verified first)
    verify(d) / iter_batches(d)       # checks only / pyarrow RecordBatches
    split_names(d), resolve(d, split) # the splits of a split dir / the shard dir of one split
    iter_parquet_batches(file)        # any Parquet file, one row group in memory at a time

The manifest holds: format, schema version, stage, creation time, code version (guardrl version +
git commit when available), the config, row counts per source x modality x label (request and
response), skipped rows per reason (with the first examples' locations), and each shard's name,
rows, bytes and sha256.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from guardrl.io.atomic import _fsync_dir, atomic_write_text
from guardrl.schema import ARROW_SCHEMA, SCHEMA_VERSION, Sample, SchemaError

MANIFEST = "manifest.json"
FORMAT = "guardrl.shards"
SPLITS_FORMAT = "guardrl.splits"
SHARD_PATTERN = "part-{:05d}.parquet"
OnBad = Literal["error", "skip"]
_PID_FILE = ".writer.pid"
_MAX_SKIP_EXAMPLES = 100
_DICT_COLUMNS = ("source", "modality", "label_request", "label_response")  # low-cardinality columns


class ShardError(RuntimeError):
    """An output folder a reader must not trust; the message names the folder or file."""


class BadInputError(SchemaError):
    """A source row that cannot be converted; the message starts with its location (file:row)."""


#: exceptions :meth:`ShardWriter.guard` treats as bad input (anything else is a bug and propagates).
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (SchemaError, UnicodeError, KeyError)


def code_version() -> dict[str, Any]:
    """guardrl's version and, when run from a git checkout, the commit (``None`` otherwise)."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("guardrl")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode == 0:
            commit = out.stdout.strip() or None
    return {"guardrl": version, "git_commit": commit}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


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


# ------------------------------------------------------------------------------------------------ read
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
