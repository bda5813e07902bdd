"""OpenAI Moderation evaluation set (openai/moderation-api-release) -> request-task samples
(paper: 1,680 = 522 harmful / 1,158 unharmful).

Upstream file: ``data/samples-1680.jsonl.gz`` (or unzipped ``.jsonl``): one object per line, ``prompt`` plus
binary category flags ``S, H, V, HR, SH, S3, H2, V2``. Label: harmful when any flag is 1, else
unharmful. The authors note a missing flag means "not annotated" (924 rows lack some); the paper (and
GuardReasoner's eval set of 1,680) keeps every row, so a missing flag counts as 0 and the flags that were
missing are recorded in provenance (``unknown_flags``) for anyone who wants the strict reading. Lines
83, 690 and 1207 hold U+FFFD in the authors' valid UTF-8: kept, counted in the manifest's ``u_fffd``.
"""

from __future__ import annotations

from data_prep.benchmark_base import (
    Benchmark,
    benchmark_main,
    binary_label,
    convert_benchmark,
    first_file,
    request_sample,
)
from data_prep.common import text
from guardrl.core.schema import HARMFUL, UNHARMFUL

FLAGS = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")


def _rows(where, rec, path):
    flags = {k: binary_label(rec[k], f"{where} {k}") for k in FLAGS if rec.get(k) is not None}
    unknown = [k for k in FLAGS if rec.get(k) is None]
    label = HARMFUL if HARMFUL in flags.values() else UNHARMFUL
    n = where.rsplit(":", 1)[-1]
    yield request_sample(BENCH, f"openai_moderation/{n}", text(rec, "prompt", where), label, where,
                         flags=sorted(k for k, v in flags.items() if v == HARMFUL), unknown_flags=unknown)


BENCH = Benchmark(name="openai_moderation", dataset="OpenAIModeration", tasks=("request",),
                  patterns=("**/samples-1680.jsonl.gz", "**/samples-1680.jsonl"), rows=_rows, select=first_file,
                  notes={"paper_count": 1680, "missing_flag": 0})


def convert(src, out, **kw):
    return convert_benchmark(BENCH, src, out, **kw)


def main(argv=None):
    benchmark_main(BENCH, argv)


if __name__ == "__main__":
    main()
