"""HarmImageTest (GuardReasoner-VL's held-out image set: UnsafeBench, BadNews, HatefulMemes, HatefulPMemes,
HOD) -> request-task image samples (paper: 3,295).

Upstream (Hub only): ``yueliu1999/GuardReasoner-VLTest``, ``test/HarmImageTest.json`` + the images in
``test/HarmImageTest/``; record layout in ``data_prep.vltest_common``. ``--src hf:yueliu1999/GuardReasoner-VLTest``
downloads just those files (``huggingface_hub``). Selection: every record of the file. The file name
follows the repository's ``test/<Name>.json`` pattern (``test/WildGuardTestPrompt.json`` is listed there);
that this set is named exactly ``HarmImageTest.json`` and holds 3,295 records is not verified here (the
repository is not among the real files this project tests against).
"""

from __future__ import annotations

from data_prep.benchmark_base import Benchmark, HubSource, benchmark_main, convert_benchmark
from data_prep.vltest_common import vltest_rows


def _rows(where, rec, path):
    yield vltest_rows(BENCH, where, rec, path, with_response=False)


BENCH = Benchmark(name="harmimagetest", dataset="HarmImageTest", tasks=("request",),
                  patterns=("**/HarmImageTest.json",), rows=_rows,
                  hub=HubSource("yueliu1999/GuardReasoner-VLTest", None, "test",
                                files=("test/HarmImageTest.json", "test/HarmImageTest/*")),
                  notes={"paper_count": 3295})


def convert(src, out, **kw):
    return convert_benchmark(BENCH, src, out, **kw)


def main(argv=None):
    benchmark_main(BENCH, argv)


if __name__ == "__main__":
    main()
