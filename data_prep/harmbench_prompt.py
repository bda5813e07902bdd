"""HarmBenchPrompt (centerforaisafety/HarmBench text behaviours) -> request-task samples (paper: 239, all harmful).

Upstream file: ``data/behavior_datasets/harmbench_behaviors_text_test.csv``, columns ``Behavior,
FunctionalCategory, SemanticCategory, Tags, ContextString, BehaviorID``. The folder also holds ``_val.csv``
and ``_all.csv`` (``all`` = test + val); only the test CSV is read. Selection: the paper's 239 are the
test split's 159 ``standard`` + 80 ``copyright`` behaviours; the 81 ``contextual`` ones are skipped and
counted in the manifest. The request is the ``Behavior`` text; every behaviour is harmful by construction.
"""

from __future__ import annotations

from data_prep.benchmark_base import Benchmark, Skip, benchmark_main, convert_benchmark, request_sample
from data_prep.common import text
from guardrl.core.schema import HARMFUL


def _rows(where, rec, path):
    category = text(rec, "FunctionalCategory", where)
    if category == "contextual":
        yield Skip("contextual behaviour (the paper's 239 = the test split's standard + copyright behaviours)")
        return
    yield request_sample(BENCH, f"harmbench/{text(rec, 'BehaviorID', where)}", text(rec, "Behavior", where), HARMFUL,
                         where, functional_category=category, semantic_category=rec.get("SemanticCategory"))


BENCH = Benchmark(name="harmbench_prompt", dataset="HarmBenchPrompt", tasks=("request",),
                  patterns=("**/harmbench_behaviors_text_test.csv",), rows=_rows,
                  notes={"paper_count": 239, "selection": "test CSV, FunctionalCategory standard or copyright"})


def convert(src, out, **kw):
    return convert_benchmark(BENCH, src, out, **kw)


def main(argv=None):
    benchmark_main(BENCH, argv)


if __name__ == "__main__":
    main()
