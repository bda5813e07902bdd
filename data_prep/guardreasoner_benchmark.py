"""The GuardReasoner authors' processed evaluation sets -> guardrl benchmarks (one per file).

    python -m data_prep.guardreasoner_benchmark --src .../guardreasoner-benchmark --out outputs/benchmarks/guardreasoner
    python -m data_prep.guardreasoner_benchmark --src .../0_9_safe_rlhf.json --out outputs/benchmarks/SafeRLHF

Upstream: ``yueliu1999/GuardReasoner``, ``data/benchmark/0_<k>_<name>.json``: one JSON list per benchmark,
each row ``{"instruction", "input", "output"}`` with ``input`` = ``"Human user:\\n{request}\\n\\nAI
assistant:\\n{response or None}\\n\\n"`` and ``output`` the gold label of the file's task, either a bare
``harmful`` / ``unharmful`` or an ``Answers:`` block (``Request: None`` / ``Response: <label>``). These
are the exact rows the paper family scores; their counts equal the paper's tables.

The file's prefix names the benchmark and its task (:data:`FILES`). ``0_7_xstest_response_refusal.json``
carries refusal labels (``compliance`` / ``refusal``), not a harm task: a folder read skips it (named in
the manifest's ``files_skipped``), naming it alone is an error. A ``None`` response means no response.
The ``instruction`` (the authors' prompt) is not kept: guardrl renders its own prompt template.
A folder gives one shard dir holding every benchmark (``source`` = the benchmark; evaluation splits it
into one benchmark per source); a single file gives that benchmark alone.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from data_prep.benchmark_base import Benchmark, request_sample, response_sample, write_records
from data_prep.common import base_parser, find_files, iter_json, run, text
from guardrl.core.schema import SchemaError, normalize_label
from guardrl.core.shards import ShardWriter

log = logging.getLogger("data_prep")
NAME = "guardreasoner_benchmark"
#: file prefix -> (benchmark = the sample ``source``, task); None = not a harm task
FILES: dict[str, tuple[str, str] | None] = {
    "0_0": ("SimpleSafetyTests", "request"), "0_1": ("AegisSafetyTest", "request"),
    "0_2": ("OpenAIModeration", "request"), "0_3": ("HarmBenchPrompt", "request"),
    "0_4": ("WildGuardTest", "request"), "0_5": ("HarmBenchResponse", "response"),
    "0_6": ("XSTestResponseHarmful", "response"), "0_7": None, "0_8": ("ToxicChat", "request"),
    "0_9": ("SafeRLHF", "response"), "0_A": ("BeaverTails", "response"),
}
REFUSAL_ONLY = "refusal labels (compliance / refusal), not a harm task"
_PREFIX = re.compile(r"^(0_[0-9A-Za-z])_")
_HUMAN, _AI = "Human user:\n", "\n\nAI assistant:\n"
_LINE = {"request": re.compile(r"^\s*request\s*:\s*(\S+)\s*$", re.I | re.M),
         "response": re.compile(r"^\s*response\s*:\s*(\S+)\s*$", re.I | re.M)}


def file_task(path: Path) -> tuple[str, str] | None:
    """``(benchmark, task)`` of a processed file from its prefix; None for the refusal-only ``0_7``.

    Raises:
        SchemaError: a file name without a known ``0_<k>_`` prefix.
    """
    m = _PREFIX.match(path.name)
    key = m.group(1)[:2] + m.group(1)[2:].upper() if m else None
    if key not in FILES:
        raise SchemaError(f"{path.name}: not a GuardReasoner benchmark file (known prefixes: {sorted(FILES)})")
    return FILES[key]


def split_processed_input(value: str, where: str) -> tuple[str, str | None]:
    """``(request, response)`` of a processed ``input``, verbatim; the response ``None`` means none.

    Raises:
        SchemaError: not ``Human user:\\n...\\n\\nAI assistant:\\n...\\n\\n`` with exactly one assistant marker.
    """
    if not value.startswith(_HUMAN) or not value.endswith("\n\n") or value.count(_AI) != 1:
        raise SchemaError(f"{where}: input is not 'Human user:\\n<request>\\n\\nAI assistant:\\n<response>\\n\\n'")
    request, response = value[len(_HUMAN):-2].split(_AI)
    return request, (None if response == "None" else response)


def gold_label(output: str, task: str, where: str) -> str:
    """The label of ``task`` in a processed ``output`` (a bare label or an ``Answers:`` block)."""
    bare = output.strip()
    if "\n" not in bare and ":" not in bare:
        value = bare
    else:
        found = _LINE[task].findall(output)
        if not found:
            raise SchemaError(f"{where}: output has no '{task.capitalize()}: <label>' line")
        value = found[-1]
    label = normalize_label(value, where=f"{where} output", allow_none=False)
    assert label is not None
    return label


def _spec(path: Path, dataset: str, task: str) -> Benchmark:
    stem = path.stem

    def rows(where, rec, _path):
        request, response = split_processed_input(text(rec, "input", where), where)
        label = gold_label(text(rec, "output", where), task, where)
        sid = f"guardreasoner/{stem}/{where.rsplit('[', 1)[-1].rstrip(']')}"
        if task == "request":
            if response is not None:
                raise SchemaError(f"{where}: a request-task file row has a response")
            yield request_sample(b, sid, request, label, where, file=path.name)
        else:
            if response is None:
                raise SchemaError(f"{where}: a response-task file row has no response")
            yield response_sample(b, sid, request, response, label, where, file=path.name)

    b = Benchmark(name=NAME, dataset=dataset, tasks=(task,), patterns=(path.name,), rows=rows, reader=iter_json)
    return b


def convert(src, out, *, on_bad: str = "error", limit: int | None = None, max_shard_bytes: int = 256 << 20) -> Path:
    """Every processed file under ``src`` (or the one file ``src``) into one shard dir at ``out``.

    Raises:
        SchemaError: ``src`` is the refusal-only file, an unknown file name, or a bad row (``on_bad="error"``).
        FileNotFoundError: no ``0_*.json`` under ``src``.
    """
    src = Path(src)
    files = find_files(src, ("0_*.json",), what="GuardReasoner processed benchmark files (0_<k>_<name>.json)")
    specs, skipped = [], {}
    for f in files:
        bt = file_task(f)
        if bt is None:
            if src.is_file():
                raise SchemaError(f"{f.name}: {REFUSAL_ONLY}; guardrl scores request/response harmfulness only")
            skipped[f.name] = REFUSAL_ONLY
            log.info("%s: skipped (%s)", f.name, REFUSAL_ONLY)
            continue
        specs.append((f, _spec(f, *bt)))
    fffd: dict[str, int] = {}
    config = {"converter": NAME, "src": str(src), "limit": limit, "on_bad": on_bad,
              "files": {f.name: {"benchmark": b.dataset, "task": b.tasks[0]} for f, b in specs},
              "files_skipped": skipped, "u_fffd": fffd}
    seen = [0]
    with ShardWriter(out, stage=f"data_prep.{NAME}", config=config, on_bad=on_bad,
                     max_shard_bytes=max_shard_bytes) as w:
        for f, b in specs:
            with w.guard(f.name):
                write_records(w, b, b.reader(f), f, limit=limit, seen=seen, fffd=fffd)
    return Path(out)


def main(argv=None):
    args = base_parser("GuardReasoner processed benchmark files -> guardrl shards (one benchmark per file)"
                       ).parse_args(argv)
    run(convert, args)


if __name__ == "__main__":
    main()
