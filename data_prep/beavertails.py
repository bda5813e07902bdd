"""BeaverTails (PKU-Alignment/BeaverTails, 30k test split) -> response-task samples
(paper: 3,021 = 1,733 harmful / 1,288 unharmful).

Upstream (Hub only): ``round0/30k/test.jsonl.gz`` (split ``30k_test`` of the card's default config; the
``round0/330k/`` files are the larger set and are not read): ``prompt, response, category`` (14
harm-category booleans), ``is_safe``. Selection: the whole 30k test split, whose size is the paper's
3,021. Label: harmful when ``is_safe`` is false; the flagged categories go to provenance.
"""

from __future__ import annotations

from data_prep.benchmark_base import (
    Benchmark,
    HubSource,
    benchmark_main,
    binary_label,
    convert_benchmark,
    first_file,
    response_sample,
)
from data_prep.common import field, text


def _rows(where, rec, path):
    label = binary_label(field(rec, "is_safe", where), f"{where} is_safe", harmful_when=False)
    cats = rec.get("category") or {}
    n = where.rsplit(":", 1)[-1].replace("row ", "").strip()
    yield response_sample(BENCH, f"beavertails/{path.name}/{n}", text(rec, "prompt", where),
                          text(rec, "response", where), label, where,
                          categories=sorted(k for k, v in cats.items() if v) if isinstance(cats, dict) else [])


BENCH = Benchmark(name="beavertails", dataset="BeaverTails", tasks=("response",),
                  patterns=("**/30k/test.jsonl.gz", "**/30k/test.jsonl"), rows=_rows, select=first_file,
                  hub=HubSource("PKU-Alignment/BeaverTails", None, "30k_test"),
                  notes={"paper_count": 3021, "selection": "the 30k test split"})


def convert(src, out, **kw):
    return convert_benchmark(BENCH, src, out, **kw)


def main(argv=None):
    benchmark_main(BENCH, argv)


if __name__ == "__main__":
    main()
