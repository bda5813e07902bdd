"""SPA-VL-Eval (GuardReasoner-VL's text-image evaluation set built from SPA-VL) -> request- and
response-task text-image samples (paper: 3,282 for each task).

Upstream (Hub only): ``yueliu1999/GuardReasoner-VLTest``, ``test/SPA_VL_Eval.json`` + the images in
``test/SPA_VL_Eval/``; record layout in ``data_prep.vltest_common``. ``--src hf:yueliu1999/GuardReasoner-VLTest``
downloads just those files (``huggingface_hub``). Selection: every record of the file. The exact file name
(``SPA_VL_Eval.json`` or ``SPA-VL-Eval.json``) and the count 3,282 are not verified here (the repository is
not among the real files this project tests against).
"""

from __future__ import annotations

from data_prep.benchmark_base import Benchmark, HubSource, benchmark_main, convert_benchmark, first_file
from data_prep.vltest_common import vltest_rows


def _rows(where, rec, path):
    yield vltest_rows(BENCH, where, rec, path, with_response=True)


BENCH = Benchmark(name="spa_vl_eval", dataset="SPA-VL-Eval", tasks=("request", "response"),
                  patterns=("**/SPA_VL_Eval.json", "**/SPA-VL-Eval.json"), rows=_rows, select=first_file,
                  hub=HubSource("yueliu1999/GuardReasoner-VLTest", None, "test",
                                files=("test/SPA_VL_Eval.json", "test/SPA_VL_Eval/*", "test/SPA-VL-Eval.json",
                                       "test/SPA-VL-Eval/*")),
                  notes={"paper_count": 3282})


def convert(src, out, **kw):
    return convert_benchmark(BENCH, src, out, **kw)


def main(argv=None):
    benchmark_main(BENCH, argv)


if __name__ == "__main__":
    main()
