"""MM-SafetyBench (isXinLiu/MM-SafetyBench) -> rewrite-task evaluation inputs (1,680 questions x SD / SD_TYPO /
TYPO = 5,040 image-text pairs).

    python -m data_prep.mm_safetybench --src R/mm-safetybench --images data/imgs --out outputs/benchmarks/MM-SafetyBench

Upstream: ``data/processed_questions/{NN}-{Scenario}.json`` (13 scenarios; the authors' spelling, e.g.
``01-Illegal_Activitiy``), each a JSON object ``{question_id: {"Question", "GPT-Pred", "Changed Question",
"Key Phrase", "Phrase Type", "Rephrased Question", "Rephrased Question(SD)"}}``; the images of
``MM-SafetyBench(imgs).zip`` unzipped to ``data/imgs`` (``--images``), named ``{scenario}/{kind}/{id}.jpg``.
The three pairs per question, as the authors' README defines them:

* ``SD``: ``{scenario}/SD/{id}.jpg`` (a Stable Diffusion picture of the key phrase) + ``Rephrased Question(SD)``;
* ``SD_TYPO``: ``{scenario}/SD_TYPO/{id}.jpg`` (that picture above the typography) + ``Rephrased Question``;
* ``TYPO``: the key phrase rendered as text + ``Rephrased Question``. guardrl renders it (no download needed)
  the way the authors' ``creation/2_img_process.py`` does: black on white, font size 90, 1,024 px wide, words
  wrapped at the full width, line height = the font size, half a line above and below (``1024 x 90 * (lines +
  1)``); guardrl draws DejaVu Sans Condensed in place of their bundled Arial (not redistributable; the same line
  count for 1,615 of the 1,680 phrases) (``TYPO_STYLE``; byte-identical on every run with the same fonts).

Every pair is an attack (``label_request = "harmful"``); ``category`` = the scenario (``01-Illegal_Activitiy``),
``subset`` = the kind, ``tiny`` = the question is in the authors' ``TinyVersion_ID_List.json`` (when that file
is beside ``processed_questions/``). A missing SD / SD_TYPO file is a counted skip naming it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from data_prep.benchmark_base import Benchmark, Skip
from data_prep.common import SourceFileError, text
from data_prep.rewrite_bench import convert_with_images, load_image, main_with_images, rewrite_sample
from guardrl.core.images import prepare_image
from guardrl.core.schema import SchemaError
from guardrl.core.typographic import TextStyle, available_fonts, render_text

IMAGES_HELP = "the folder of MM-SafetyBench(imgs).zip (the repository's data/imgs), holding {scenario}/SD/{id}.jpg ..."
KINDS = ("SD", "SD_TYPO", "TYPO")
#: the question field each kind is asked with (the authors' README, "Evaluation")
QUESTION_FIELD = {"SD": "Rephrased Question(SD)", "SD_TYPO": "Rephrased Question", "TYPO": "Rephrased Question"}


def _sans() -> str:
    """DejaVu Sans Condensed where installed (its widths are the closest to Arial's of the fonts guardrl finds:
    the authors' wrap gives the same line count for 1,615 of the 1,680 key phrases), else DejaVu Sans, else
    Pillow's default."""
    fonts = available_fonts()
    for name in ("DejaVuSansCondensed.ttf", "DejaVuSans.ttf"):
        for f in fonts:
            cand = Path(f).with_name(name)
            if f != "pillow-default" and cand.is_file():
                return str(cand)
    return fonts[0]


#: the authors' typography (``creation/2_img_process.py``): font size 90, 1,024 px wide, words wrapped at the full
#: width, black on white, line height = the font size; :func:`render_key_phrase` adds half a line above and below
TYPO_STYLE = TextStyle(font="DejaVuSansCondensed.ttf", size=90, fg=(0, 0, 0), bg=(255, 255, 255), width=1024,
                       margin=0, line_spacing=1.0, layout="plain", max_height=4096)
TYPO_PAD = TYPO_STYLE.size // 2


def render_key_phrase(phrase: str) -> bytes:
    """The TYPO image of ``phrase``: PNG bytes, ``1024 x 90 * (lines + 1)`` as the authors draw it."""
    from PIL import Image

    style = TextStyle(**{**TYPO_STYLE.to_dict(), "font": _sans()})
    png, _ = render_text(phrase, style)
    text_img = Image.open(io.BytesIO(png))
    canvas = Image.new("RGB", (text_img.width, text_img.height + 2 * TYPO_PAD), style.bg)
    canvas.paste(text_img, (0, TYPO_PAD))
    buf = io.BytesIO()
    canvas.save(buf, "PNG", compress_level=6)
    return buf.getvalue()


@cache
def _tiny_ids(folder: Path) -> dict[str, frozenset[int]]:
    p = folder / "TinyVersion_ID_List.json"
    if not p.is_file():
        return {}
    try:
        rows = json.loads(p.read_text(encoding="utf-8"))
        return {r["Scenario"]: frozenset(int(i) for i in r["Sampled_ID_List"]) for r in rows}
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceFileError(f"{p.name}: not the authors' [{{'Scenario', 'Sampled_ID_List'}}] list: {exc}") from exc


def read_scenario(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, record)`` per question of one scenario file; the record gains ``_id`` and ``_scenario``.

    Raises:
        SourceFileError: not UTF-8 / not JSON / not an object of objects, naming the file.
    """
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SourceFileError(f"{path.name}: not a UTF-8 JSON file: {exc}") from exc
    if not isinstance(data, dict):
        raise SourceFileError(f"{path.name}: expected a JSON object {{question_id: {{...}}}}")
    for qid, rec in data.items():
        where = f"{path.name}[{qid}]"
        if not isinstance(rec, dict):
            raise SchemaError(f"{where}: expected a JSON object")
        yield where, {**rec, "_id": qid, "_scenario": path.stem}


def _rows(where, rec, path, *, images, on_missing):
    qid, scenario = rec["_id"], rec["_scenario"]
    if not str(qid).isdigit():
        raise SchemaError(f"{where}: question id {qid!r} is not a number")
    phrase = text(rec, "Key Phrase", where)
    tiny = int(qid) in _tiny_ids(path.parent.parent).get(scenario, frozenset())
    for kind in KINDS:
        question = text(rec, QUESTION_FIELD[kind], where)
        ref = f"{scenario}/{kind}/{qid}.jpg"
        if kind == "TYPO":
            img: bytes | Skip = prepare_image(render_key_phrase(phrase), where=f"{where} TYPO")
            ref = f"rendered:{ref}"
        else:
            img = load_image(images, ref, f"{where} {kind}", on_missing=on_missing)
        if isinstance(img, Skip):
            yield img
            continue
        yield rewrite_sample(BENCH, f"{scenario}/{kind}/{qid}", question, img, harmful=True, where=where,
                             subset=kind, image_ref=ref, category=scenario, key_phrase=phrase,
                             phrase_type=rec.get("Phrase Type"), original_question=rec.get("Question"),
                             question_id=int(qid), tiny=tiny)


BENCH = Benchmark(name="mm_safetybench", dataset="MM-SafetyBench", tasks=("rewrite",),
                  patterns=("processed_questions/*.json", "**/processed_questions/*.json"), rows=_rows,
                  reader=read_scenario,
                  notes={"paper_count": 1680, "kinds": list(KINDS), "typo_style": TYPO_STYLE.to_dict()})


def convert(src, out, *, images=None, on_missing_image="skip", **kw):
    return convert_with_images(BENCH, src, out, images=images, on_missing_image=on_missing_image, **kw)


def main(argv=None):
    main_with_images(BENCH, IMAGES_HELP, argv)


if __name__ == "__main__":
    main()
