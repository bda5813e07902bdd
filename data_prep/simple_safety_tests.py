"""SimpleSafetyTests (bertiev/SimpleSafetyTests) -> request-task samples (paper: 100, all harmful).

Upstream file: ``SimpleSafetyTests - test cases.csv`` (the name has spaces), columns
``id, harm_area, counter, category, prompts_final``; 100 rows, every prompt harmful by construction.
The real file gives 100 samples (``tests/data_prep/test_real_benchmarks.py``).
"""

from __future__ import annotations

from data_prep.benchmark_base import Benchmark, benchmark_main, convert_benchmark, request_sample
from data_prep.common import text
from guardrl.core.schema import HARMFUL


def _rows(where, rec, path):
    yield request_sample(BENCH, f"sst/{text(rec, 'id', where)}", text(rec, "prompts_final", where), HARMFUL, where,
                         harm_area=rec.get("harm_area"), category=rec.get("category"))


BENCH = Benchmark(name="simple_safety_tests", dataset="SimpleSafetyTests", tasks=("request",),
                  patterns=("**/SimpleSafetyTests - test cases.csv",), rows=_rows,
                  notes={"paper_count": 100})


def convert(src, out, **kw):
    return convert_benchmark(BENCH, src, out, **kw)


def main(argv=None):
    benchmark_main(BENCH, argv)


if __name__ == "__main__":
    main()
