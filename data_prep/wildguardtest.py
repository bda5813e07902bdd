"""WildGuardTest (allenai/wildguardmix, config ``wildguardtest``, split ``test``) -> request- and
response-task samples (paper: 1,756 request labels, 1,768 response labels).

Upstream (Hub only, gated): ``test/wildguard_test.parquet`` with ``prompt, adversarial, response, prompt_harm_label,
response_refusal_label, response_harm_label, subcategory, prompt_harm_agreement,
response_refusal_agreement, response_harm_agreement``. Labels are ``harmful`` / ``unharmful`` / null.
One sample per row: ``label_request`` from ``prompt_harm_label``, and when the row has a response,
``label_response`` from ``response_harm_label``; a null label leaves that task unscored (the paper
counts 1,756 request and 1,768 response labels; not verified here, the file is not among the real
files this project tests against, and GuardReasoner's processed ``0_4_wild_guard_test.json`` was left
out of them). A row with neither label is skipped and counted.
"""

from __future__ import annotations

from data_prep.benchmark_base import Benchmark, HubSource, Skip, benchmark_main, convert_benchmark
from data_prep.common import text
from guardrl.core.schema import Sample, normalize_label


def _rows(where, rec, path):
    request = text(rec, "prompt", where)
    response = text(rec, "response", where, required=False)
    lr = normalize_label(rec.get("prompt_harm_label"), where=f"{where} prompt_harm_label")
    lp = normalize_label(rec.get("response_harm_label"), where=f"{where} response_harm_label") if response else None
    n = where.rsplit(" ", 1)[-1]
    if lr is None and lp is None:
        yield Skip("no prompt_harm_label and no response_harm_label")
        return
    yield Sample(id=f"wildguardtest/{n}", source=BENCH.dataset, modality="text", request=request,
                 response=response, label_request=lr, label_response=lp,
                 provenance={"dataset": BENCH.dataset, "where": where, "task": "request+response",
                             "adversarial": rec.get("adversarial"), "subcategory": rec.get("subcategory")})


BENCH = Benchmark(name="wildguardtest", dataset="WildGuardTest", tasks=("request", "response"),
                  patterns=("**/wildguard_test.parquet",), rows=_rows,
                  hub=HubSource("allenai/wildguardmix", "wildguardtest", "test"),
                  notes={"paper_count": {"request": 1756, "response": 1768}})


def convert(src, out, **kw):
    return convert_benchmark(BENCH, src, out, **kw)


def main(argv=None):
    benchmark_main(BENCH, argv)


if __name__ == "__main__":
    main()
