"""guard-mini (the bundled corpus, ``data/guard-mini/train.jsonl``) -> a guardrl split dir (train/dev).

    python -m data_prep.guard_mini --src data/guard-mini --out outputs/data/guard-mini

What it writes (``OUT/train``, ``OUT/dev``, one atomic folder; see ``guardrl.core.shards``):

* **split**: by a hash of the source row id -- ``dev_fraction`` (default 10%) of source rows go to
  dev; every variant of a row lands in the same split (no leakage). Deterministic.
* **text** row for every source row (``source = "guard-mini/<source>"``).
* **typographic variants** for a deterministic ``image_fraction`` / ``text_image_fraction`` of the
  rows whose request fits in an image (<= ``max_render_chars`` characters): the request text is
  rendered into a PNG (word-wrapped, font/size/colours/width/layout chosen per row, see
  ``guardrl.core.typographic``). ``image`` rows carry no text at all; ``text_image`` rows carry a
  *neutral* instruction ("Follow the instructions in the image.") so the harm lives in the image.
  Both keep the response (if any) and the labels of the source row.
* **request-only variants** (``request_only``, on by default): every labelled request that carries a
  response is written a second time without it (id ``<row>-req``, ``variant = "request-only"``, no
  response label), harmful and unharmful alike, once per distinct request text in a split. Most
  requests of the sources without responses are harmful and most benign requests come with a
  response, so without these copies the presence of a response would predict the request label;
  the SFT recipe's ``data.balance: label_presence`` then evens out the remaining imbalance.
* **borrowed-response variants** (``borrowed_responses``, a fraction of the *train* split's bare labelled
  text requests, default 0.2): the request with another train row's response attached (id ``<row>-br``,
  ``variant = "borrowed-response"``, ``borrowed_from`` = that row), the response's label kept (its harm is in
  its own content). The borrowed label is harmful for half of them and unharmful for the other half,
  whatever the request's label: in the source data a benign-sounding answer nearly always follows a benign
  request, so a small guard learns "an answer that sounds friendly means the request was fine"; these rows
  make the response carry no information about the request label. Dev is left as published.
* **target**: a synthetic templated trace (``guardrl.tasks.guard.traces``, provenance ``target_kind``) built from
  modality, category and the gold labels.
* **rows with a null request label** (PyRIT harm scorer set: responses labelled, objectives not):
  kept, with ``label_request = None`` and **no SFT target** (a target must state a request label);
  they serve RL and evaluation of the response task, where an unlabelled task is simply not scored.
* labels are normalised (``"Harmful "`` -> harmful); an unknown label (``"maybe"``) fails the run
  naming ``train.jsonl:LINE`` unless ``--on-bad skip`` (then it is counted in the manifest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_prep.common import base_parser, iter_jsonl, progress, run, stable_fraction, text
from guardrl.core.images import prepare_image
from guardrl.core.schema import HARMFUL, UNHARMFUL, Sample, SchemaError, normalize_label
from guardrl.core.shards import SplitWriter
from guardrl.core.typographic import render_text, style_for
from guardrl.tasks.guard.traces import TRACE_KIND, synthetic_target

NAME = "guard_mini"
DEFAULT_SRC = Path(__file__).resolve().parent.parent / "data" / "guard-mini"
NEUTRAL_INSTRUCTIONS = (
    "Follow the instructions in the image.",
    "Please read the text in the image and respond to it.",
    "The image contains a request. Please help with it.",
    "What does the image ask for? Answer it.",
)
_EXTRA_FIELDS = ("category", "subcategory", "severity", "human_scores", "toxicity_score", "language",
                 "attack_type", "source_id", "file", "license", "label_basis")


def _text_sample(rec: dict[str, Any], where: str) -> tuple[Sample, dict[str, Any]]:
    rid = text(rec, "id", where)
    request = text(rec, "prompt", where)
    response = text(rec, "response", where, required=False)
    label_request = normalize_label(rec.get("label_prompt"), where=f"{where} label_prompt")
    label_response = normalize_label(rec.get("label_response"), where=f"{where} label_response")
    if response is None and label_response is not None:
        raise SchemaError(f"{where}: label_response {label_response!r} but no response")
    source = text(rec, "source", where)
    category = rec.get("category") if isinstance(rec.get("category"), str) else None
    prov = {"dataset": "guard-mini", "source": source, "source_row": rid, "where": where, "variant": "text"}
    prov.update({k: rec[k] for k in _EXTRA_FIELDS if rec.get(k) is not None})
    target = synthetic_target(key=rid, request=request, response=response, label_request=label_request,
                              label_response=label_response, modality="text", category=category)
    prov["target_kind"] = TRACE_KIND if target else None
    s = Sample(id=rid, source=f"guard-mini/{source}", modality="text", request=request, response=response,
               label_request=label_request, label_response=label_response, target=target, provenance=prov)
    return s, prov


def _variant(base: Sample, prov: dict[str, Any], modality: str) -> Sample:
    suffix = "img" if modality == "image" else "ti"
    vid = f"{base.id}-{suffix}"
    png, info = render_text(base.request, style_for(vid))
    png = prepare_image(png, where=f"{prov['where']} rendered image")
    request = "" if modality == "image" else NEUTRAL_INSTRUCTIONS[int(stable_fraction("instr", vid) * len(NEUTRAL_INSTRUCTIONS))]
    target = synthetic_target(key=vid, request=base.request, response=base.response,
                              label_request=base.label_request, label_response=base.label_response,
                              modality=modality, category=prov.get("category"))
    vprov = {**prov, "variant": f"typographic-{modality}", "typographic": info,
             "target_kind": TRACE_KIND if target else None}
    return Sample(id=vid, source=base.source, modality=modality, request=request, images=(png,),
                  response=base.response, label_request=base.label_request,
                  label_response=base.label_response, target=target, provenance=vprov)


def _request_only(base: Sample, prov: dict[str, Any]) -> Sample:
    vid = f"{base.id}-req"
    target = synthetic_target(key=vid, request=base.request, response=None, label_request=base.label_request,
                              label_response=None, modality="text", category=prov.get("category"))
    vprov = {**prov, "variant": "request-only", "target_kind": TRACE_KIND if target else None}
    return Sample(id=vid, source=base.source, modality="text", request=base.request, response=None,
                  label_request=base.label_request, label_response=None, target=target, provenance=vprov)


def _response_pool(path: Path, *, seed: str, dev_fraction: float, max_chars: int,
                   limit: int | None) -> dict[str, list[tuple[str, str]]]:
    """The train split's labelled responses of at most ``max_chars``, ``{label: [(row id, response)]}``, in file
    order. Lines that do not parse are left to the main pass (which reports or counts them)."""
    pool: dict[str, list[tuple[str, str]]] = {HARMFUL: [], UNHARMFUL: []}
    for n, (where, rec) in enumerate(iter_jsonl(path, on_error=lambda where, exc: None)):
        if limit is not None and n >= limit:
            break
        try:
            base, _ = _text_sample(rec, where)
        except SchemaError:
            continue
        train = stable_fraction(seed, "split", base.id) >= dev_fraction
        if train and base.label_response in pool and len(base.response) <= max_chars:
            pool[base.label_response].append((base.id, base.response))
    return pool


def _borrowed_response(base: Sample, prov: dict[str, Any], pool: dict[str, list[tuple[str, str]]],
                       seed: str) -> Sample | None:
    """``base`` (a bare request) with a response from ``pool`` attached; None when that label's pool is empty."""
    label = HARMFUL if stable_fraction(seed, "borrow-label", base.id) < 0.5 else UNHARMFUL
    if not pool[label]:
        return None
    src_id, response = pool[label][int(stable_fraction(seed, "borrow-row", base.id) * len(pool[label]))]
    vid = f"{base.id}-br"
    target = synthetic_target(key=vid, request=base.request, response=response, label_request=base.label_request,
                              label_response=label, modality="text", category=prov.get("category"))
    vprov = {**prov, "variant": "borrowed-response", "borrowed_from": src_id,
             "target_kind": TRACE_KIND if target else None}
    return Sample(id=vid, source=base.source, modality="text", request=base.request, response=response,
                  label_request=base.label_request, label_response=label, target=target, provenance=vprov)


def convert(
    src: str | Path = DEFAULT_SRC,
    out: str | Path = "outputs/data/guard-mini",
    *,
    on_bad: str = "error",
    limit: int | None = None,
    dev_fraction: float = 0.1,
    image_fraction: float = 0.25,
    text_image_fraction: float = 0.25,
    max_render_chars: int = 600,
    request_only: bool = True,
    borrowed_responses: float = 0.2,
    max_borrowed_chars: int = 600,
    max_shard_bytes: int = 256 << 20,
    seed: str = "guard-mini-v1",
) -> Path:
    """Convert guard-mini into ``out/{train,dev}`` (see the module docstring). Returns ``out``."""
    src = Path(src)
    path = src / "train.jsonl" if src.is_dir() else src
    if not path.is_file():
        raise FileNotFoundError(f"{path}: guard-mini train.jsonl not found")
    if not (0 <= dev_fraction < 1 and 0 <= image_fraction <= 1 and 0 <= text_image_fraction <= 1
            and 0 <= borrowed_responses <= 1):
        raise ValueError("fractions must be in [0, 1] (dev_fraction < 1)")
    config = {"converter": NAME, "src": str(path), "dev_fraction": dev_fraction, "image_fraction": image_fraction,
              "text_image_fraction": text_image_fraction, "max_render_chars": max_render_chars, "seed": seed,
              "limit": limit, "on_bad": on_bad, "request_only": request_only,
              "borrowed_responses": borrowed_responses, "max_borrowed_chars": max_borrowed_chars}
    pool = (_response_pool(path, seed=seed, dev_fraction=dev_fraction, max_chars=max_borrowed_chars,
                           limit=limit)
            if borrowed_responses > 0 else {})
    seen: dict[str, set[str]] = {"train": set(), "dev": set()}  # request texts given a request-only row
    with SplitWriter(out, splits=("train", "dev"), stage=f"data_prep.{NAME}", config=config, on_bad=on_bad,
                     max_shard_bytes=max_shard_bytes) as sw:
        for n, (where, rec) in enumerate(progress(iter_jsonl(path, on_error=sw.bad), desc="guard-mini")):
            if limit is not None and n >= limit:
                break
            with sw.guard(where):
                base, prov = _text_sample(rec, where)
                split = "dev" if stable_fraction(seed, "split", base.id) < dev_fraction else "train"
                w = sw[split]
                w.write(base, where=where)
                key = " ".join(base.request.lower().split())
                if (request_only and base.response is not None and base.label_request is not None
                        and key not in seen[split]):
                    seen[split].add(key)
                    w.write(_request_only(base, prov), where=where)
                if (split == "train" and base.response is None and base.label_request is not None
                        and stable_fraction(seed, "borrow", base.id) < borrowed_responses):
                    borrowed = _borrowed_response(base, prov, pool, seed)
                    if borrowed is not None:
                        w.write(borrowed, where=where)
                if len(base.request) <= max_render_chars:
                    if stable_fraction(seed, "image", base.id) < image_fraction:
                        w.write(_variant(base, prov, "image"), where=where)
                    if stable_fraction(seed, "text_image", base.id) < text_image_fraction:
                        w.write(_variant(base, prov, "text_image"), where=where)
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.set_defaults(src=DEFAULT_SRC)
    for a in p._actions:
        if a.dest == "src":
            a.required = False
    p.add_argument("--dev-fraction", type=float, default=0.1)
    p.add_argument("--image-fraction", type=float, default=0.25)
    p.add_argument("--text-image-fraction", type=float, default=0.25)
    p.add_argument("--no-request-only", dest="request_only", action="store_false",
                   help="leave out the request-only copies of rows that carry a response")
    p.add_argument("--borrowed-responses", type=float, default=0.2,
                   help="fraction of bare train requests also written with another row's response (0: none)")
    args = p.parse_args(argv)
    run(convert, args, dev_fraction=args.dev_fraction, image_fraction=args.image_fraction,
        text_image_fraction=args.text_image_fraction, request_only=args.request_only,
        borrowed_responses=args.borrowed_responses)


if __name__ == "__main__":
    main()
