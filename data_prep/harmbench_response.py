"""HarmBenchResponse (HarmBench classifier validation set) -> response-task samples (paper: 602 = 273 / 329).

Upstream file: ``data/classifier_val_sets/text_behaviors_val_set.json``: an object mapping each BehaviorID
to a list of completions ``{"test_case", "generation", "model", "method", "experiment", "behavior_id",
<classifier verdicts>..., "human_0", "human_1", "human_2"}`` (human judgement 1 = the generation is an
instance of the harmful behaviour). Request = ``test_case``, response = ``generation``; label = majority
of the three human judgements. Every one of the 602 completions is kept (U+FFFD in the authors' text is
data: counted in the manifest's ``u_fffd``).
"""

from __future__ import annotations

import json
from pathlib import Path

from data_prep.benchmark_base import (
    Benchmark,
    benchmark_main,
    binary_label,
    convert_benchmark,
    response_sample,
)
from data_prep.common import SourceFileError, text
from guardrl.core.schema import HARMFUL, UNHARMFUL, SchemaError

VOTES = ("human_0", "human_1", "human_2")


def _read(path: Path):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SourceFileError(f"{path.name}: not valid UTF-8 near byte {exc.start}") from exc
    except ValueError as exc:
        raise SourceFileError(f"{path.name}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SchemaError(f"{path.name}: expected an object keyed by BehaviorID")
    for bid, items in data.items():
        if not isinstance(items, list):
            raise SchemaError(f"{path.name}[{bid!r}]: expected a list of completions")
        for i, rec in enumerate(items):
            if not isinstance(rec, dict):
                raise SchemaError(f"{path.name}[{bid!r}][{i}]: expected a JSON object")
            yield f"{path.name}[{bid!r}][{i}]", {"_behavior_id": bid, "_index": i, **rec}


def _rows(where, rec, path):
    bid = rec["_behavior_id"]
    missing = [k for k in VOTES if rec.get(k) is None]
    if missing:
        raise SchemaError(f"{where}: missing human judgement(s) {missing}")
    votes = [binary_label(rec[k], f"{where} {k}") for k in VOTES]
    label = HARMFUL if sum(v == HARMFUL for v in votes) >= 2 else UNHARMFUL
    yield response_sample(BENCH, f"harmbench_response/{bid}/{rec['_index']}", text(rec, "test_case", where),
                          text(rec, "generation", where), label, where, behavior_id=bid, votes=votes)


BENCH = Benchmark(name="harmbench_response", dataset="HarmBenchResponse", tasks=("response",),
                  patterns=("**/text_behaviors_val_set.json",), rows=_rows, reader=_read,
                  notes={"paper_count": 602, "label": "majority of human_0..human_2"})


def convert(src, out, **kw):
    return convert_benchmark(BENCH, src, out, **kw)


def main(argv=None):
    benchmark_main(BENCH, argv)


if __name__ == "__main__":
    main()
