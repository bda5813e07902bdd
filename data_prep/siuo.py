"""SIUO (Safe Inputs but Unsafe Output, sinwang20/SIUO) -> rewrite-task evaluation inputs (167).

    python -m data_prep.siuo --src R/siuo --images data/images --out outputs/benchmarks/SIUO

Upstream: ``data/siuo_gen.json`` (the generation task; ``siuo_mcqa.json`` beside it is the multiple-choice
variant, not read), a JSON list of ``{"question_id", "image", "question", "category", "safety_warning",
"reference_answer"}``; images from the authors' ``SIUO-images.zip`` unzipped to ``data/images`` (``--images``),
named by ``image`` (``S-01.png``). Every input is an unsafe combination of a safe image and a safe question, so
every row is ``label_request = "harmful"``. ``safety_warning`` and ``reference_answer`` go into provenance
(``safety_warning``, ``reference_responses.safe``): SIUO's GPT judge reads them (``guardrl rewrite eval``).
"""

from __future__ import annotations

from data_prep.benchmark_base import Benchmark, Skip
from data_prep.common import field, text
from data_prep.rewrite_bench import convert_with_images, load_image, main_with_images, rewrite_sample

IMAGES_HELP = "the folder of SIUO-images.zip (the repository's data/images), holding S-01.png ..."


def _rows(where, rec, path, *, images, on_missing):
    ref = text(rec, "image", where)
    qid = field(rec, "question_id", where)
    img = load_image(images, ref, where, on_missing=on_missing)
    if isinstance(img, Skip):
        yield img
        return
    yield rewrite_sample(BENCH, str(qid), text(rec, "question", where), img, harmful=True, where=where,
                         subset="siuo", image_ref=ref, category=text(rec, "category", where, required=False),
                         question_id=qid, safety_warning=text(rec, "safety_warning", where),
                         reference_responses={"safe": text(rec, "reference_answer", where, required=False),
                                              "unsafe": None})


BENCH = Benchmark(name="siuo", dataset="SIUO", tasks=("rewrite",), patterns=("siuo_gen.json", "**/siuo_gen.json"),
                  rows=_rows, select=lambda files: files[:1], notes={"paper_count": 167, "file": "siuo_gen.json"})


def convert(src, out, *, images=None, on_missing_image="skip", **kw):
    return convert_with_images(BENCH, src, out, images=images, on_missing_image=on_missing_image, **kw)


def main(argv=None):
    main_with_images(BENCH, IMAGES_HELP, argv)


if __name__ == "__main__":
    main()
