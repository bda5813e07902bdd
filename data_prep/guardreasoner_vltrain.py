"""GuardReasoner-VLTrain (``yueliu1999/GuardReasoner-VLTrain``) -> one guardrl shard dir (paper: 123,096 samples,
every row of the three parts; no selection).

    python -m data_prep.guardreasoner_vltrain --src /path/to/GuardReasoner-VLTrain --out outputs/data/vltrain

Accepted local layouts (all found under ``--src``, recursively):

* the Hugging Face release: an ``instruction`` / ``input`` / ``output`` table with an ``image``
  column for the image parts, as Parquet (``*.parquet``; the image column in the ``datasets``
  Image encoding ``{"bytes", "path"}``, raw bytes or a path), JSON (a list of records) or JSON Lines;
  image paths are resolved against the file's folder and ``--src``;
* the same records in LLaMA-Factory's sharegpt layout (``messages``/``conversations`` =
  system/user/assistant + ``images``) as the authors' training scripts use;
* ``hf:yueliu1999/GuardReasoner-VLTrain`` -- the ``datasets`` cache (offline), or a folder written by
  ``Dataset.save_to_disk``.

The part (text / image / text-image) comes from the file name (``...Text``, ``...Image``,
``...TextImage``; ``source = "GuardReasoner-VLTrain/<part>"``); the modality of each row from its
content (image + request text -> ``text_image``; image only -> ``image``).

``input`` holds ``Human user:\\n<request>\\n\\nAI assistant:\\n<response or None>``; ``<image>``
placeholders are removed. ``output`` holds the reasoning and the answers; the labels are parsed from
its ``Request:`` / ``Response:`` lines (normalised; ``None`` = no response) and the reasoning -- the
``<think>`` block, or everything before the answers -- becomes ``target``, reformatted with
``guardrl.tasks.guard.parse.format_verdict``. Rows are streamed (Parquet by row batches, JSON Lines by line) so
memory stays flat with corpus size; a JSON *list* file is loaded whole by necessity.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.common import base_parser, iter_json, iter_jsonl, iter_parquet, progress, run
from guardrl.core.images import ImageError, prepare_image
from guardrl.core.schema import Sample, SchemaError, normalize_label
from guardrl.core.shards import ShardWriter
from guardrl.tasks.guard.parse import (
    RESULT_CLOSE,
    RESULT_OPEN,
    TAGS,
    THINK_CLOSE,
    THINK_OPEN,
    Verdict,
    format_verdict,
)

NAME = "guardreasoner_vltrain"
DATASET = "GuardReasoner-VLTrain"
_PARTS = (("textimage", "text_image"), ("text_image", "text_image"), ("image", "image"), ("text", "text"))
_HUMAN = re.compile(r"human\s+user\s*:[ \t]*\n?", re.IGNORECASE)
_AI = re.compile(r"(?:^|\n)\s*ai\s+assistant\s*:[ \t]*\n?", re.IGNORECASE)
_REQ = re.compile(r"^\s*(?:[#*\-]\s*)*request\s*:\s*\**\s*([A-Za-z ]+?)\s*\**\s*$", re.IGNORECASE | re.MULTILINE)
_RESP = re.compile(r"^\s*(?:[#*\-]\s*)*response\s*:\s*\**\s*([A-Za-z ]+?)\s*\**\s*$", re.IGNORECASE | re.MULTILINE)
_ANSWERS = re.compile(r"^\s*(?:-{3,}\s*)?(?:#+\s*)?answers?\s*:?\s*$", re.IGNORECASE | re.MULTILINE)
_IMAGE_COLUMNS = ("image", "images", "image_path", "img")


def part_of(path: Path) -> str | None:
    """``text`` / ``image`` / ``text_image`` from a file or folder name (``...TrainTextImage.json``)."""
    key = re.sub(r"[^a-z_]", "", str(path).lower().replace("-", "_"))
    tail = key.rsplit("vltrain", 1)[-1] if "vltrain" in key else path.stem.lower()
    for needle, part in _PARTS:
        if needle in tail.replace("__", "_"):
            return part
    return None


def split_input(text: str, where: str) -> tuple[str, str | None]:
    """``(request, response)`` from a GuardReasoner ``input``; a response of ``None`` means none."""
    text = text.replace("<image>", "").replace("\r\n", "\n")
    m = _HUMAN.search(text)
    body = text[m.end():] if m else text
    a = _AI.search(body)
    if a:
        request, response = body[: a.start()], body[a.end():]
    else:
        request, response = body, None
    request = request.strip()
    if response is not None:
        response = response.strip()
        if response.lower() in ("", "none", "null"):
            response = None
    return request, response


def _label(raw: str, where: str, *, task: str) -> str | None:
    value = raw.strip().lower()
    if value in ("none", "null", "n/a"):
        return None
    return normalize_label(value, where=f"{where} output {task} label")


def parse_output(text: str, where: str) -> tuple[str | None, str | None, str]:
    """``(label_request, label_response, reasoning)`` from a GuardReasoner ``output``.

    Raises:
        SchemaError: no ``Request:`` line, an unknown label, or no reasoning.
    """
    reqs = _REQ.findall(text)
    if not reqs:
        raise SchemaError(f"{where}: output has no 'Request: <label>' line")
    label_request = _label(reqs[-1], where, task="request")
    resps = _RESP.findall(text)
    label_response = _label(resps[-1], where, task="response") if resps else None
    if THINK_OPEN in text and THINK_CLOSE in text:
        reasoning = text[text.index(THINK_OPEN) + len(THINK_OPEN): text.index(THINK_CLOSE)]
    else:
        cut = _ANSWERS.search(text)
        first = _REQ.search(text)
        end = cut.start() if cut else (first.start() if first else len(text))
        reasoning = text[:end]
        if RESULT_OPEN in reasoning:
            reasoning = reasoning[: reasoning.index(RESULT_OPEN)]
    for tag in (*TAGS, RESULT_OPEN, RESULT_CLOSE):
        reasoning = reasoning.replace(tag, "")
    reasoning = reasoning.strip()
    if not reasoning:
        raise SchemaError(f"{where}: output has no reasoning before the answers")
    return label_request, label_response, reasoning


def _image_refs(rec: dict[str, Any]) -> list[Any]:
    for col in _IMAGE_COLUMNS:
        v = rec.get(col)
        if v is None or v == "" or v == []:
            continue
        return list(v) if isinstance(v, list | tuple) else [v]
    return []


def _load_image(ref: Any, bases: list[Path], where: str) -> bytes:
    if isinstance(ref, dict):
        if ref.get("bytes"):
            return prepare_image(ref["bytes"], where=where)
        ref = ref.get("path")
    if isinstance(ref, bytes | bytearray | memoryview):
        return prepare_image(bytes(ref), where=where)
    if isinstance(ref, str) and ref:
        rel = ref[2:] if ref.startswith("./") else ref
        for base in bases:
            p = (base / rel).resolve()
            if p.is_file():
                if not any(p.is_relative_to(b.resolve()) for b in bases):
                    raise ImageError(f"{where}: image path {ref!r} leaves the data folder")
                return prepare_image(p, where=f"{where} ({rel})")
        raise ImageError(f"{where}: image file {ref!r} not found under {[str(b) for b in bases]}")
    raise ImageError(f"{where}: unusable image reference of type {type(ref).__name__}")


def _fields(rec: dict[str, Any], where: str) -> tuple[str, str]:
    """``(input, output)`` from either layout."""
    msgs = rec.get("messages") or rec.get("conversations")
    if isinstance(msgs, list) and msgs:
        def content(m: Any) -> str:
            c = m.get("content", m.get("value")) if isinstance(m, dict) else None
            if not isinstance(c, str):
                raise SchemaError(f"{where}: message without text content")
            return c
        roles = [(m.get("role") or m.get("from") or "").lower() for m in msgs if isinstance(m, dict)]
        users = [content(m) for m, r in zip(msgs, roles, strict=False) if r in ("user", "human")]
        bots = [content(m) for m, r in zip(msgs, roles, strict=False) if r in ("assistant", "gpt")]
        if not users or not bots:
            raise SchemaError(f"{where}: messages need a user and an assistant turn")
        return users[-1], bots[-1]
    for key in ("input", "output"):
        if key not in rec:
            raise SchemaError(f"{where}: missing field {key!r}")
        if not isinstance(rec[key], str):
            raise SchemaError(f"{where}: field {key!r} must be a string")
    return rec["input"], rec["output"]


def to_sample(rec: dict[str, Any], where: str, *, part: str | None, bases: list[Path], row_id: str) -> Sample:
    inp, out = _fields(rec, where)
    request, response = split_input(inp, where)
    label_request, label_response, reasoning = parse_output(out, where)
    refs = _image_refs(rec)
    images = tuple(_load_image(r, bases, f"{where} image[{i}]") for i, r in enumerate(refs))
    if images:
        modality = "text_image" if request else "image"
    else:
        modality = "text"
        if part in ("image", "text_image"):
            raise SchemaError(f"{where}: {part} row without an image")
    if response is None:
        label_response = None
    try:
        target = format_verdict(Verdict(request=label_request, response=label_response, reasoning=reasoning,
                                        format_ok=True)) if label_request else None
    except ValueError as exc:
        raise SchemaError(f"{where}: reasoning cannot be formatted as a target: {exc}") from exc
    prov = {"dataset": DATASET, "part": part, "where": where, "target_kind": "GuardReasoner-VLTrain reasoning"}
    for k in ("source", "id", "category", "dataset"):
        if isinstance(rec.get(k), str | int) and k not in prov:
            prov[f"src_{k}"] = rec[k]
    return Sample(id=row_id, source=f"{DATASET}/{part or modality}", modality=modality, request=request,
                  response=response, images=images, label_request=label_request, label_response=label_response,
                  target=target, provenance=prov)


def _files(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.name.lower().endswith(
        (".parquet", ".jsonl", ".jsonl.gz", ".json")) and not p.name.startswith(".")
        and p.name not in ("dataset_info.json", "state.json", "dataset_dict.json"))
    if not files:
        raise FileNotFoundError(f"{src}: no *.parquet / *.json / *.jsonl files of {DATASET}")
    return files


def _records(src: str | Path, on_error) -> Iterator[tuple[str, dict, Path, str | None, str]]:
    """``(where, record, base folder, part, row key)`` for every row of every data file."""
    s = str(src)
    p = Path(s)
    if s.startswith("hf:") or (p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "state.json").is_file())):
        yield from _hf_records(s)
        return
    for f in _files(p):
        part = part_of(f)
        rel = f.relative_to(p).as_posix() if p.is_dir() else f.name
        name = f.name.lower()
        if name.endswith(".parquet"):
            it = iter_parquet(f, batch_size=64)
        elif name.endswith((".jsonl", ".jsonl.gz")):
            it = iter_jsonl(f, on_error=on_error)
        else:
            it = iter_json(f)
        for i, (where, rec) in enumerate(it):
            yield where, rec, f.parent, part, f"{rel}#{i}"


def _hf_records(s: str) -> Iterator[tuple[str, dict, Path, str | None, str]]:
    import datasets

    dd = datasets.load_dataset(s[3:]) if s.startswith("hf:") else datasets.load_from_disk(s)
    if isinstance(dd, datasets.Dataset):
        dd = datasets.DatasetDict({"train": dd})
    for split, ds in dd.items():
        for col in _IMAGE_COLUMNS:
            if col in ds.column_names and isinstance(ds.features[col], datasets.Image):
                ds = ds.cast_column(col, datasets.Image(decode=False))
        part = part_of(Path(split))
        base = Path(s) if not s.startswith("hf:") else Path(".")
        for i, rec in enumerate(ds):
            yield f"{split}:row {i}", rec, base, part, f"{split}#{i}"


def convert(src: str | Path, out: str | Path, *, on_bad: str = "error", limit: int | None = None,
            max_shard_bytes: int = 256 << 20) -> Path:
    """Convert a local copy of GuardReasoner-VLTrain into one shard dir (see the module docstring)."""
    src_s = str(src)
    root = Path(src_s[3:] if src_s.startswith("hf:") else src_s)
    config = {"converter": NAME, "src": src_s, "limit": limit, "on_bad": on_bad}
    with ShardWriter(out, stage=f"data_prep.{NAME}", config=config, on_bad=on_bad,
                     max_shard_bytes=max_shard_bytes) as w:
        for n, (where, rec, base, part, key) in enumerate(progress(_records(src, w.bad), desc=DATASET)):
            if limit is not None and n >= limit:
                break
            with w.guard(where):
                row_id = f"vltrain/{key}"
                bases = [base] + ([root] if root.is_dir() and root != base else [])
                w.write(to_sample(rec, where, part=part, bases=bases, row_id=row_id), where=where)
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    run(convert, base_parser(__doc__.splitlines()[0]).parse_args(argv))


if __name__ == "__main__":
    main()
