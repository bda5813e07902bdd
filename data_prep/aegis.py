"""AegisSafetyTest (nvidia/Aegis-AI-Content-Safety-Dataset-1.0, test split) -> request-task samples
(paper: 359 = 232 harmful / 127 unharmful).

Upstream (Hub only, gated): the release's test split (``--src hf:nvidia/Aegis-AI-Content-Safety-Dataset-1.0``
reads split ``test``; a local copy is found as ``*test*.json`` / ``.jsonl`` / ``.parquet`` / ``.csv``), one
record per text with ``id, num_annotations, text, text_type`` (``user_message`` | ``llm_response``) and up
to five annotator labels ``labels_0 .. labels_4`` (``Safe`` or a hazard category such as ``Violence``,
``Needs Caution``). Selection: only ``user_message`` rows (the paper scores Aegis on the request task);
``llm_response`` rows are skipped and counted. Label: harmful when more annotators gave a non-``Safe``
label than ``Safe`` (majority vote), else unharmful. Not verified against the real release here (not among
the real files this project tests against): that these rules give 359 rows and 232 / 127 is the paper's
count, not a measurement; GuardReasoner's processed ``0_1_AegisSafetyTest.json`` holds the exact rows.
"""

from __future__ import annotations

from data_prep.benchmark_base import (
    Benchmark,
    HubSource,
    Skip,
    benchmark_main,
    convert_benchmark,
    request_sample,
)
from data_prep.common import text
from guardrl.core.schema import HARMFUL, UNHARMFUL, SchemaError


def _rows(where, rec, path):
    kind = text(rec, "text_type", where)
    if kind != "user_message":
        yield Skip(f"text_type {kind} (only user messages form the request task)")
        return
    labels = [str(rec[k]).strip() for k in sorted(rec) if k.startswith("labels_") and rec[k] not in (None, "")]
    if not labels:
        raise SchemaError(f"{where}: no annotator labels (labels_0 .. labels_4)")
    unsafe = sum(lab.lower() != "safe" for lab in labels)
    label = HARMFUL if unsafe > len(labels) - unsafe else UNHARMFUL
    yield request_sample(BENCH, f"aegis/{text(rec, 'id', where)}", text(rec, "text", where), label, where,
                         annotations=labels)


BENCH = Benchmark(name="aegis", dataset="AegisSafetyTest", tasks=("request",),
                  patterns=("**/*test*.jsonl", "**/*test*.json", "**/*test*.parquet", "**/*test*.csv"), rows=_rows,
                  hub=HubSource("nvidia/Aegis-AI-Content-Safety-Dataset-1.0", None, "test"),
                  notes={"paper_count": 359, "selection": "text_type == user_message, majority label"})


def convert(src, out, **kw):
    return convert_benchmark(BENCH, src, out, **kw)


def main(argv=None):
    benchmark_main(BENCH, argv)


if __name__ == "__main__":
    main()
