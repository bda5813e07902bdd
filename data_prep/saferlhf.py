"""SafeRLHF (PKU-Alignment/PKU-SafeRLHF, test split) -> response-task samples (paper: 2,000 = 1,000 / 1,000).

Upstream (Hub only): ``data/<model>/test.jsonl`` (``Alpaca-7B``, ``Alpaca2-7B``, ``Alpaca3-8B``; config
``default``, split ``test`` reads them all) with ``prompt, response_0, response_1, is_response_0_safe,
is_response_1_safe`` (+ sources, harm categories, severity and preference fields). Each row gives two
samples, one per response: label harmful when ``is_response_<i>_safe`` is false.

Selection: the paper's 2,000 (exactly 1,000 harmful / 1,000 unharmful) is a balanced subset whose rule
(which rows, which response, which seed) is not stated by the paper or by the GuardReasoner code, so it
cannot be established; this converter writes every test response rather than guess. The paper's exact
rows are GuardReasoner's processed ``0_9_safe_rlhf.json`` (``python -m data_prep.guardreasoner_benchmark``),
which the recipes' ``eval.yaml`` use.
"""

from __future__ import annotations

from data_prep.benchmark_base import (
    Benchmark,
    HubSource,
    benchmark_main,
    binary_label,
    convert_benchmark,
    response_sample,
)
from data_prep.common import field, text


def _rows(where, rec, path):
    prompt = text(rec, "prompt", where)
    for i in (0, 1):
        label = binary_label(field(rec, f"is_response_{i}_safe", where), f"{where} is_response_{i}_safe",
                             harmful_when=False)
        yield response_sample(BENCH, f"saferlhf/{path.parent.name}/{path.name}/{where.rsplit(':', 1)[-1].strip()}/r{i}",
                              prompt, text(rec, f"response_{i}", where), label, where, response_index=i)


BENCH = Benchmark(name="saferlhf", dataset="SafeRLHF", tasks=("response",),
                  patterns=("**/test.jsonl", "**/test-*.parquet", "**/test.jsonl.gz"), rows=_rows,
                  hub=HubSource("PKU-Alignment/PKU-SafeRLHF", "default", "test"),
                  notes={"paper_count": 2000, "selection": "none: every test response (the paper's subset rule is unknown)"})


def convert(src, out, **kw):
    return convert_benchmark(BENCH, src, out, **kw)


def main(argv=None):
    benchmark_main(BENCH, argv)


if __name__ == "__main__":
    main()
