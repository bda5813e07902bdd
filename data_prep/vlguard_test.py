"""VLGuard's test split (ys-zong/VLGuard) -> rewrite-task evaluation inputs: 1,558 prompts on 1,000 images =
558 safe-safe + 558 safe-unsafe + 442 unsafe.

    python -m data_prep.vlguard_test --src R/vlguard --images VLGuard/test --out outputs/benchmarks/VLGuard-test

Upstream: ``data/test.json``, a JSON list of ``{"id", "image", "safe", "harmful_category"?,
"harmful_subcategory"?, "instr-resp": [...]}``; a safe image (``safe: true``) carries one ``safe_instruction``
and one ``unsafe_instruction`` turn, an unsafe image one ``instruction`` turn, each with the authors'
``response``; images from the Hub release's ``test/`` folder (``--images``), at ``image``
(``bad_ads/<uuid>.png``). Subsets as the authors' ``VLGuard_eval.py --dataset`` names them (guardrl spells them
``safe_safe`` / ``safe_unsafe`` / ``unsafe``): ``safe_safe`` is the helpfulness set (``label_request =
"unharmful"``), the other two are attacks (``"harmful"``). The turn's ``response`` (the authors' safe answer) goes
into ``reference_responses.safe``.
"""

from __future__ import annotations

from data_prep.benchmark_base import Benchmark, Skip, as_bool
from data_prep.common import field, text
from data_prep.rewrite_bench import convert_with_images, load_image, main_with_images, rewrite_sample
from guardrl.core.schema import SchemaError

IMAGES_HELP = "the folder of VLGuard's test images (the Hub release's test/), holding bad_ads/..., HOD/..."
#: instruction key of each subset's turn (VLGuard_eval.py / utils.load_data)
SUBSET_KEYS = {"safe_safe": "safe_instruction", "safe_unsafe": "unsafe_instruction", "unsafe": "instruction"}


def _turns(rec, where, safe: bool) -> list[tuple[str, dict]]:
    turns = field(rec, "instr-resp", where)
    if not isinstance(turns, list) or not turns:
        raise SchemaError(f"{where}: 'instr-resp' must be a non-empty list")
    subsets = ("safe_safe", "safe_unsafe") if safe else ("unsafe",)
    out = []
    for subset in subsets:
        key = SUBSET_KEYS[subset]
        turn = next((t for t in turns if isinstance(t, dict) and key in t), None)
        if turn is None:
            raise SchemaError(f"{where}: a {'safe' if safe else 'unsafe'} image without an {key!r} turn")
        out.append((subset, turn))
    return out


def _rows(where, rec, path, *, images, on_missing):
    sid, ref = text(rec, "id", where), text(rec, "image", where)
    safe = as_bool(field(rec, "safe", where), f"{where} safe")
    turns = _turns(rec, where, safe)
    img = load_image(images, ref, where, on_missing=on_missing)
    if isinstance(img, Skip):
        for _ in turns:  # one skip per prompt, so the counts add up to the 1,558
            yield img
        return
    for subset, turn in turns:
        yield rewrite_sample(BENCH, f"{sid}/{subset}", text(turn, SUBSET_KEYS[subset], f"{where} {subset}"), img,
                             harmful=subset != "safe_safe", where=where, subset=subset, image_ref=ref,
                             category=rec.get("harmful_category"), subcategory=rec.get("harmful_subcategory"),
                             image_safe=safe, vlguard_id=sid,
                             reference_responses={"safe": text(turn, "response", where, required=False),
                                                  "unsafe": None})


BENCH = Benchmark(name="vlguard_test", dataset="VLGuard-test", tasks=("rewrite",),
                  patterns=("test.json", "**/test.json"), rows=_rows, select=lambda files: files[:1],
                  notes={"paper_count": {"safe_safe": 558, "safe_unsafe": 558, "unsafe": 442}})


def convert(src, out, *, images=None, on_missing_image="skip", **kw):
    return convert_with_images(BENCH, src, out, images=images, on_missing_image=on_missing_image, **kw)


def main(argv=None):
    main_with_images(BENCH, IMAGES_HELP, argv)


if __name__ == "__main__":
    main()
