"""The frame every evaluation-benchmark converter fills in: find the files of the authors' layout, map each
record to samples with the paper's task mapping, stream them into one shard dir.

Task mapping (PAPER.md, Evaluation): a *request* benchmark gives samples with ``label_request`` set and
no response (the guard sees ``AI assistant: None``); a *response* benchmark gives the request, the
response and ``label_response`` with ``label_request = None`` (that task is not scored there);
WildGuardTest and SPA-VL-Eval carry both. ``target`` is always ``None`` (evaluation data).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.common import (
    SourceFileError,
    base_parser,
    count_replacement_chars,
    find_files,
    hf_repo,
    is_hf,
    iter_any,
    iter_hf,
    progress,
    run,
)
from guardrl.core.schema import HARMFUL, UNHARMFUL, Sample, SchemaError, normalize_label
from guardrl.core.shards import ShardWriter


@dataclass(frozen=True)
class Skip:
    """Yielded by a row function for a record the benchmark leaves out by design (counted in the manifest)."""

    reason: str


RowFn = Callable[[str, dict[str, Any], Path], Iterable["Sample | Skip"]]


@dataclass(frozen=True)
class HubSource:
    """Where ``--src hf:<id>`` reads a Hub-only benchmark: the config and split the paper uses.

    ``files``: for a release that is files rather than a table (JSON + an image folder), the globs to fetch
    with ``huggingface_hub.snapshot_download``; the download is then read like a local ``--src``.
    """

    repo: str
    config: str | None
    split: str
    files: tuple[str, ...] = ()


def download_hub_files(hub: HubSource, src: str | Path) -> Path:
    """A local snapshot of ``hub.files`` (needs ``huggingface_hub`` and network, or its cache).

    Raises:
        SourceFileError: the package is missing or the download fails, naming what was asked for.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise SourceFileError(f"{src}: reading from the Hub needs `huggingface_hub` (pip install huggingface_hub) and "
                          f"network access; or download the files and pass the folder as --src") from exc
    try:
        return Path(snapshot_download(hub.repo, repo_type="dataset", allow_patterns=list(hub.files)))
    except Exception as exc:  # offline, gated, unknown id
        raise SourceFileError(f"{src}: cannot download {list(hub.files)} of {hub.repo!r} from the Hub: {exc}") from exc


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's converter spec.

    Attributes:
        name: converter name (``python -m data_prep.<name>``).
        dataset: the ``source`` of every sample (the benchmark's name in PAPER.md).
        tasks: ``("request",)``, ``("response",)`` or both.
        patterns: globs (relative to ``--src``) of the data files in the authors' layout.
        rows: ``(where, record, file) -> samples``.
        reader: ``file -> (where, record)``; default by file extension.
        select: ``files found -> files read``: picks the paper's split/version where a folder holds several
            (default: all that match ``patterns``).
        hub: the Hub data set for ``--src hf:<id>`` (None: local files only).
        notes: recorded in the manifest's config (the selection rule, the paper's count).
    """

    name: str
    dataset: str
    tasks: tuple[str, ...]
    patterns: tuple[str, ...]
    rows: RowFn
    reader: Callable[[Path], Iterator[tuple[str, dict[str, Any]]]] = iter_any
    select: Callable[[list[Path]], list[Path]] | None = None
    hub: HubSource | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def first_file(files: list[Path]) -> list[Path]:
    """``select`` for a benchmark that is one file: the first match in ``patterns`` order (e.g. the ``.gz``
    over an unzipped copy beside it), never two copies of the same rows."""
    return files[:1]


def as_bool(value: Any, where: str) -> bool:
    """0/1, "0"/"1", true/false (any case, as CSV writes them) -> bool.

    Raises:
        SchemaError: anything else, naming ``where``.
    """
    v = value.strip().lower() if isinstance(value, str) else value
    if v in ("1", "true") or (not isinstance(v, str) and v is not None and v == 1):
        return True
    if v in ("0", "false") or (not isinstance(v, str) and v is not None and v == 0):
        return False
    raise SchemaError(f"{where}: expected 0/1 or true/false, got {value!r}")


def binary_label(value: Any, where: str, *, harmful_when: Any = 1) -> str:
    """0/1, "0"/"1", true/false or a harmful/unharmful word -> label (``harmful_when`` is the harmful value).

    Raises:
        SchemaError: anything else, naming ``where``.
    """
    if isinstance(value, str) and value.strip().lower() not in ("0", "1", "true", "false"):
        label = normalize_label(value, where=where, allow_none=False)
        assert label is not None
        return label
    try:
        flag = as_bool(value, where)
    except SchemaError:
        raise SchemaError(f"{where}: unknown label {value!r}") from None
    return HARMFUL if flag == bool(harmful_when) else UNHARMFUL


def request_sample(b: Benchmark, sid: str, request: str, label: Any, where: str, **prov: Any) -> Sample:
    """A request-task sample (no response)."""
    return Sample(id=sid, source=b.dataset, modality="text", request=request, response=None,
                  label_request=normalize_label(label, where=f"{where} request label", allow_none=False),
                  provenance={"dataset": b.dataset, "where": where, "task": "request", **prov})


def response_sample(b: Benchmark, sid: str, request: str, response: str, label: Any, where: str,
                    **prov: Any) -> Sample:
    """A response-task sample (request label not scored)."""
    if not response.strip():
        raise SchemaError(f"{where}: empty response")
    return Sample(id=sid, source=b.dataset, modality="text", request=request, response=response,
                  label_request=None,
                  label_response=normalize_label(label, where=f"{where} response label", allow_none=False),
                  provenance={"dataset": b.dataset, "where": where, "task": "response", **prov})


def write_records(w: ShardWriter, b: Benchmark, records: Iterable[tuple[str, dict[str, Any]]], path: Path, *,
                  limit: int | None, seen: list[int], fffd: dict[str, int]) -> None:
    """Map each ``(where, record)`` through ``b.rows`` into ``w``: bad rows raise or are counted by ``w``, a
    :class:`Skip` is counted, U+FFFD characters in written samples are counted into ``fffd`` (by field, plus
    ``rows``). ``seen[0]`` counts source records across files for ``limit``."""
    for where, rec in progress(records, desc=b.dataset):
        if limit is not None and seen[0] >= limit:
            break
        seen[0] += 1
        with w.guard(where):
            for s in b.rows(where, rec, path):
                if isinstance(s, Skip):
                    w.skip(where, s.reason)
                elif w.write(s, where=where) and count_replacement_chars(
                        {"request": s.request, "response": s.response}, fffd):
                    fffd["rows"] = fffd.get("rows", 0) + 1


def _hub_src(b: Benchmark, src: str | Path) -> HubSource:
    if b.hub is None:
        raise SchemaError(f"{src}: {b.dataset} has no Hub source in guardrl; pass the authors' file or folder")
    repo = hf_repo(src) or b.hub.repo
    return HubSource(repo, b.hub.config, b.hub.split, b.hub.files)


def convert_benchmark(b: Benchmark, src: str | Path, out: str | Path, *, on_bad: str = "error",
                      limit: int | None = None, max_shard_bytes: int = 256 << 20) -> Path:
    """Stream every record of ``b``'s files under ``src`` (or of its Hub split, ``hf:<id>``) into one shard dir.

    The manifest's config records the files read, ``b.notes`` and ``u_fffd`` (U+FFFD counts by field and
    the number of rows holding any: the authors' text, kept as is).
    """
    if is_hf(src) and _hub_src(b, src).files:  # a release of files (JSON + images): fetch, then read locally
        src = download_hub_files(_hub_src(b, src), src)
    if is_hf(src):
        hub = _hub_src(b, src)
        read_from = {"hub": {"repo": hub.repo, "config": hub.config, "split": hub.split}}
        sources = [(lambda w: iter_hf(hub.repo, config=hub.config, split=hub.split), Path(hub.repo) / hub.split)]
    else:
        src = Path(src)
        files = find_files(src, b.patterns, what=f"{b.dataset} data files")
        if b.select is not None and src.is_dir():
            files = b.select(files)
        read_from = {"files": [str(f.relative_to(src)) if src.is_dir() else f.name for f in files]}
        # a bad JSON line is a bad row (named, raised or counted) and reading goes on
        sources = [(lambda w, f=f: iter_any(f, on_error=w.bad) if b.reader is iter_any else b.reader(f), f)
                   for f in files]
    fffd: dict[str, int] = {}  # filled while writing: the writer's config holds this same dict
    config = {"converter": b.name, "dataset": b.dataset, "tasks": list(b.tasks), "src": str(src), **read_from,
              "limit": limit, "on_bad": on_bad, **b.notes, "u_fffd": fffd}
    seen = [0]
    with ShardWriter(out, stage=f"data_prep.{b.name}", config=config, on_bad=on_bad,
                     max_shard_bytes=max_shard_bytes) as w:
        for records, path in sources:
            with w.guard(path.name):
                write_records(w, b, records(w), path, limit=limit, seen=seen, fffd=fffd)
    return Path(out)


def benchmark_main(b: Benchmark, argv: list[str] | None = None) -> None:
    args = base_parser(f"{b.dataset} -> guardrl shards ({' + '.join(b.tasks)} task)").parse_args(argv)
    run(lambda src, out, **kw: convert_benchmark(b, src, out, **kw), args)
