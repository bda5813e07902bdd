"""XSTestResponseHarmful (allenai/xstest-response, split ``response_harmfulness``) -> response-task samples
(paper: 446 = 78 harmful / 368 unharmful).

Upstream (Hub only): ``data/response_harmfulness-00000-of-00001.parquet`` with ``prompt, response, label,
prompt_type, prompt_harm_category``; ``label`` is ``harmful`` / ``unharmful``. Selection: the whole split
(446 rows on the card). The sibling ``response_refusal`` split (449) carries refusal labels, not a harm
task, and is not read.
"""

from __future__ import annotations

from data_prep.benchmark_base import Benchmark, HubSource, benchmark_main, convert_benchmark, response_sample
from data_prep.common import text


def _rows(where, rec, path):
    n = where.rsplit(" ", 1)[-1]
    yield response_sample(BENCH, f"xstest_response/{n}", text(rec, "prompt", where), text(rec, "response", where),
                          text(rec, "label", where), where, prompt_type=rec.get("prompt_type"))


BENCH = Benchmark(name="xstest_response", dataset="XSTestResponseHarmful", tasks=("response",),
                  patterns=("**/response_harmfulness-*.parquet",), rows=_rows,
                  hub=HubSource("allenai/xstest-response", None, "response_harmfulness"),
                  notes={"paper_count": 446})


def convert(src, out, **kw):
    return convert_benchmark(BENCH, src, out, **kw)


def main(argv=None):
    benchmark_main(BENCH, argv)


if __name__ == "__main__":
    main()
