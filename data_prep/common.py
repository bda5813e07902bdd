"""Shared pieces of the converters: record readers for the published layouts, field access that names
the row, deterministic hashing, the common command line, progress bars.

Every converter module exposes ``convert(src, out, *, on_bad="error", limit=None, ...) -> Path``
and ``main(argv=None)`` (``python -m data_prep.NAME --src PATH --out DIR``).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import logging
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from guardrl.core.schema import SchemaError

log = logging.getLogger("data_prep")


def stable_hash(*parts: str) -> int:
    """A 64-bit hash of ``parts`` that is the same on every machine and run (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def stable_fraction(*parts: str) -> float:
    """A deterministic number in [0, 1) for ``parts``."""
    return stable_hash(*parts) / 2**64


def progress(it: Iterable, *, desc: str, total: int | None = None, unit: str = "row") -> Iterable:
    """A tqdm progress bar on stderr (disabled when stderr is not a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, unit=unit, disable=None, mininterval=1.0, file=sys.stderr)


# ---------------------------------------------------------------------------------------- fields
#: U+FFFD REPLACEMENT CHARACTER. In a file that decodes as strict UTF-8 it is the authors' own text (the
#: OpenAI moderation set and HarmBench's classifier val set hold some), so it is kept and counted
#: (:func:`count_replacement_chars`, the manifest's ``config.u_fffd``); only bytes that do not decode are errors.
REPLACEMENT_CHAR = "\ufffd"


def text(rec: dict[str, Any], key: str, where: str, *, required: bool = True, allow_empty: bool = False) -> str | None:
    """A string field; ``KeyError`` becomes a message naming the row, bytes must be UTF-8.

    U+FFFD in a decoded string is data (see :data:`REPLACEMENT_CHAR`), not an error.

    Raises:
        SchemaError: missing (when ``required``), not a string, bytes that are not UTF-8, or empty.
    """
    if key not in rec or rec[key] is None:
        if required:
            raise SchemaError(f"{where}: missing field {key!r}")
        return None
    v = rec[key]
    if isinstance(v, bytes | bytearray):
        try:
            v = bytes(v).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SchemaError(f"{where}: field {key!r} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if not isinstance(v, str):
        if isinstance(v, int | float) and not isinstance(v, bool):
            v = str(v)
        else:
            raise SchemaError(f"{where}: field {key!r} must be a string, got {type(v).__name__}")
    if not allow_empty and not v.strip():
        if required:
            raise SchemaError(f"{where}: field {key!r} is empty")
        return None
    return v


def count_replacement_chars(texts: dict[str, str | None], into: dict[str, int]) -> bool:
    """Add the U+FFFD count of each named text to ``into[name]``; True if any text holds one."""
    found = False
    for name, t in texts.items():
        n = t.count(REPLACEMENT_CHAR) if t else 0
        if n:
            into[name] = into.get(name, 0) + n
            found = True
    return found


def field(rec: dict[str, Any], key: str, where: str) -> Any:
    if key not in rec:
        raise SchemaError(f"{where}: missing field {key!r}")
    return rec[key]


# ---------------------------------------------------------------------------------------- readers
def _open_text(path: Path):
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")


class SourceFileError(OSError):
    """A source file that cannot be read to its end: truncated or corrupt gzip, bytes that are not UTF-8 in
    a CSV or a whole-file JSON, a JSON document that does not parse. Never skipped (``--on-bad skip`` counts
    rows; here the rows after the damage would be lost unseen); the message names the file (and the last
    line read or the byte offset), or a Hub data set that cannot be loaded. JSON Lines recover per line
    instead: a bad line is a bad row."""


def _lines(fh, path: Path) -> Iterator[tuple[int, bytes]]:
    n = 0
    try:
        for n, raw in enumerate(fh, start=1):  # noqa: B007 - n is reported on error
            yield n, raw
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise SourceFileError(f"{path.name}: truncated or corrupt gzip after line {n} ({exc})") from exc


def iter_jsonl(path: Path, on_error: Callable[[str, Exception], None] | None = None) -> Iterator[tuple[str, dict]]:
    """``(where, record)`` per line of a JSON Lines file (``.jsonl``/``.jsonl.gz``); where = ``file:line``.

    Raises:
        SchemaError: a line that is not strict UTF-8 or not a JSON object (unless ``on_error`` takes it).
        SourceFileError: a truncated or corrupt gzip stream.
    """
    with open(path, "rb") as fh_raw:
        fh = gzip.GzipFile(fileobj=fh_raw) if path.suffix == ".gz" else fh_raw
        for n, raw in _lines(fh, path):
            where = f"{path.name}:{n}"
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
                if not isinstance(rec, dict):
                    raise SchemaError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            except (UnicodeDecodeError, ValueError, SchemaError) as exc:
                err = exc if isinstance(exc, SchemaError) else SchemaError(f"{where}: invalid JSON line: {exc}")
                if on_error is None:
                    raise err from exc
                on_error(where, err)
                continue
            yield where, rec


def iter_json(path: Path, *, key: str | None = None) -> Iterator[tuple[str, dict]]:
    """Records of a JSON file holding a list of objects (or ``{key: [...]}``); where = ``file[i]``."""
    try:
        with _open_text(path) as fh:
            data = json.load(fh)
    except UnicodeDecodeError as exc:
        raise SourceFileError(f"{path.name}: not valid UTF-8 near byte {exc.start}") from exc
    except ValueError as exc:
        raise SourceFileError(f"{path.name}: invalid JSON: {exc}") from exc
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise SourceFileError(f"{path.name}: truncated or corrupt gzip ({exc})") from exc
    if key is not None and isinstance(data, dict):
        data = data.get(key)
    if not isinstance(data, list):
        raise SchemaError(f"{path.name}: expected a JSON list of records")
    for i, rec in enumerate(data):
        where = f"{path.name}[{i}]"
        if not isinstance(rec, dict):
            raise SchemaError(f"{where}: expected a JSON object")
        yield where, rec


def iter_csv(path: Path, *, delimiter: str = ",") -> Iterator[tuple[str, dict]]:
    """Rows of a CSV file as dicts; where = ``file:line`` (header = line 1)."""
    csv.field_size_limit(1 << 26)
    try:
        with _open_text(path) as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            for rec in reader:
                yield f"{path.name}:{reader.line_num}", rec
    except UnicodeDecodeError as exc:
        raise SourceFileError(f"{path.name}: not valid UTF-8 near byte {exc.start}") from exc
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise SourceFileError(f"{path.name}: truncated or corrupt gzip ({exc})") from exc


def iter_parquet(path: Path, *, columns: Sequence[str] | None = None, batch_size: int = 256) -> Iterator[tuple[str, dict]]:
    """Rows of a Parquet file, streamed by batch; where = ``file:row`` (0-based)."""

    from guardrl.core.shards import iter_parquet_batches

    i = 0
    for batch in iter_parquet_batches(path, batch_size=batch_size, columns=columns):
        for rec in batch.to_pylist():
            yield f"{path.name}:row {i}", rec
            i += 1


def iter_any(path: Path, on_error: Callable[[str, Exception], None] | None = None) -> Iterator[tuple[str, dict]]:
    """Dispatch on the file name: .jsonl(.gz), .json, .csv(.gz), .tsv, .parquet (``on_error``: JSON Lines only)."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return iter_jsonl(path, on_error)
    if name.endswith(".json"):
        return iter_json(path)
    if name.endswith((".csv", ".csv.gz")):
        return iter_csv(path)
    if name.endswith(".tsv"):
        return iter_csv(path, delimiter="\t")
    if name.endswith(".parquet"):
        return iter_parquet(path)
    raise SchemaError(f"{path}: unsupported file type (expected .jsonl, .json, .csv, .tsv or .parquet)")


def find_files(src: Path, patterns: Sequence[str], *, what: str) -> list[Path]:
    """Files under ``src`` (or ``src`` itself) matching any glob in ``patterns`` (sorted, de-duplicated).

    Raises:
        FileNotFoundError: none found, listing the patterns tried.
    """
    if src.is_file():
        return [src]
    found: dict[str, Path] = {}
    for pat in patterns:
        for p in sorted(src.glob(pat)):
            if p.is_file():
                found.setdefault(str(p), p)
    if not found:
        raise FileNotFoundError(f"{src}: no {what} found (looked for {list(patterns)})")
    return list(found.values())


HF_PREFIX = "hf:"


def is_hf(src: str | Path) -> bool:
    """True for ``--src hf:<dataset id>`` (``Path`` keeps the string as given)."""
    return str(src).startswith(HF_PREFIX)


def hf_repo(src: str | Path) -> str:
    """The dataset id of ``hf:<id>`` (empty if none was given)."""
    return str(src)[len(HF_PREFIX):].strip("/")


def iter_hf(repo: str, *, config: str | None, split: str) -> Iterator[tuple[str, dict]]:
    """Rows of a Hugging Face Hub data set through ``datasets.load_dataset(repo, config, split=split)``;
    where = ``<repo>[<split>]:row <i>``. Needs ``pip install datasets`` and network (or the local cache).

    Raises:
        SourceFileError: ``datasets`` is not installed, or the Hub cannot be reached / has no such data set
            (never a skippable row); the message starts with ``hf:<repo>``.
    """
    src = f"{HF_PREFIX}{repo}"
    try:
        import datasets
    except ImportError as exc:
        raise SourceFileError(f"{src}: reading from the Hub needs the `datasets` package (pip install datasets) and "
                          f"network access; or download the files and pass the folder as --src") from exc
    try:
        ds = datasets.load_dataset(repo, config, split=split)
    except Exception as exc:  # offline, gated, unknown id/config: one message naming what was asked for
        raise SourceFileError(f"{src}: cannot load {repo!r} config {config!r} split {split!r} from the Hub: {exc}") from exc
    for i, rec in enumerate(ds):
        yield f"{repo}[{split}]:row {i}", dict(rec)


# ---------------------------------------------------------------------------------------- CLI
def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--src", type=Path, required=True,
                   help="local copy of the data set (file or folder), or hf:<dataset id> for the Hub (needs datasets)")
    p.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    p.add_argument("--on-bad", choices=("error", "skip"), default="error",
                   help="a bad row fails the run (default) or is skipped and counted in the manifest")
    p.add_argument("--limit", type=int, default=None, help="convert only the first N source rows")
    p.add_argument("--max-shard-bytes", type=int, default=256 << 20, help="shard size bound")
    return p


def run(convert: Callable[..., Path], args: argparse.Namespace, **extra: Any) -> Path:
    from guardrl.core.errors import exit_on_user_error

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = convert(args.src, args.out, on_bad=args.on_bad, limit=args.limit,
                      max_shard_bytes=args.max_shard_bytes, **extra)
    except Exception as exc:  # bad data / disk full: one message, exit 2 (guardrl.core.errors)
        exit_on_user_error(exc)
        raise
    from guardrl.core.shards import read_manifest, split_names

    names = split_names(out)
    if names:
        summary = {s: read_manifest(out / s)["num_rows"] for s in names}
        skipped = sum(read_manifest(out / s)["skipped"]["total"] for s in names)
    else:
        m = read_manifest(out)
        summary, skipped = {"rows": m["num_rows"]}, m["skipped"]["total"]
    print(f"wrote {out}: {summary}, skipped {skipped}")
    return out
