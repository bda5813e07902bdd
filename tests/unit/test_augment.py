"""Safety-aware concatenation: label rule, merged images (pixels compared), texts, pairing."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from guardrl.core.augment import (
    SEPARATOR,
    AugmentError,
    choose_layout,
    combine_labels,
    concat_samples,
    decode_image,
    encode_png,
    merge_images,
    num_augmented,
    plan_pairs,
)
from guardrl.core.schema import HARMFUL, UNHARMFUL, Sample

H, U = HARMFUL, UNHARMFUL
LABELS = (H, U, None)


def _noise(w: int, h: int, seed: int) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def _png(w: int, h: int, seed: int) -> bytes:
    buf = io.BytesIO()
    _noise(w, h, seed).save(buf, "PNG")
    return buf.getvalue()


def _sample(i: int, req_label, resp_label, has_response: bool, n_images: int = 0, text: str | None = None) -> Sample:
    images = tuple(_png(20 + 3 * k, 15 + 2 * k, seed=i * 10 + k) for k in range(n_images))
    request = text if text is not None else f"request {i}"
    modality = "text" if not images else ("image" if not request.strip() else "text_image")
    return Sample(
        id=f"s{i}",
        source=f"src{i}",
        modality=modality,
        request=request,
        response=f"response {i}" if has_response else None,
        images=images,
        label_request=req_label,
        label_response=resp_label if has_response else None,
    )


# ------------------------------------------------------------------------------------------- labels
def test_combine_labels_by_hand():
    assert combine_labels([U, U]) == U
    assert combine_labels([U, H]) == H
    assert combine_labels([H, U]) == H
    assert combine_labels([H, H]) == H
    assert combine_labels([H, None]) == H  # harmful whatever the unlabelled part is
    assert combine_labels([U, None]) is None  # unharmful needs every part known unharmful
    assert combine_labels([None, None]) is None
    assert combine_labels([U]) == U  # one part has the task (e.g. only one response)
    assert combine_labels([]) is None


def _valid_specs():
    for req, has_resp, resp in itertools.product(LABELS, (False, True), LABELS):
        if not has_resp and resp is not None:
            continue
        if req is None and resp is None:
            continue  # the schema needs at least one label
        yield req, has_resp, resp


@pytest.mark.parametrize("spec_a,spec_b", list(itertools.product(list(_valid_specs()), repeat=2)))
def test_label_rule_every_combination(spec_a, spec_b):
    a = _sample(1, spec_a[0], spec_a[2], spec_a[1])
    b = _sample(2, spec_b[0], spec_b[2], spec_b[1])
    # request: both parts have a request
    want_req = H if H in (a.label_request, b.label_request) else (
        U if a.label_request == U and b.label_request == U else None)
    # response: only the parts that have a response take part
    resp_labels = [s.label_response for s in (a, b) if s.response is not None]
    if not resp_labels:
        want_resp = None
    elif H in resp_labels:
        want_resp = H
    else:
        want_resp = U if all(lab == U for lab in resp_labels) else None
    if want_req is None and want_resp is None:
        with pytest.raises(AugmentError):
            concat_samples(a, b)
        return
    c = concat_samples(a, b)
    assert (c.label_request, c.label_response) == (want_req, want_resp)
    # unharmful only if both are unharmful (when both parts carry the label)
    if a.label_request is not None and b.label_request is not None:
        assert (c.label_request == U) == (a.label_request == U and b.label_request == U)
    assert c.provenance["parents"] == ["s1", "s2"]
    assert (c.response is None) == (a.response is None and b.response is None)


# ------------------------------------------------------------------------------------------- images
sizes = st.tuples(st.integers(1, 90), st.integers(1, 90))


@settings(max_examples=60, deadline=None)
@given(
    dims=st.lists(sizes, min_size=2, max_size=5),
    layout=st.sampled_from(["auto", "horizontal", "vertical", "grid"]),
    cap=st.integers(64, 30_000),
    seed=st.integers(0, 1000),
)
def test_merged_image_within_cap_and_contains_inputs(dims, layout, cap, seed):
    images = [_noise(w, h, seed + k) for k, (w, h) in enumerate(dims)]
    m = merge_images(images, layout=layout, max_pixels=cap)
    cw, ch = m.image.size
    assert cw * ch <= cap
    assert m.layout == (choose_layout(dims) if layout == "auto" else layout)
    assert len(m.boxes) == len(images)
    canvas = np.asarray(m.image)
    covered = np.zeros((ch, cw), dtype=int)
    for im, (x, y, w, h) in zip(images, m.boxes, strict=True):
        assert x >= 0 and y >= 0 and x + w <= cw and y + h <= ch
        # aspect kept: one scale for every input, sides rounded down (at least 1 px)
        assert (w, h) == ((im.width, im.height) if m.scale == 1.0
                          else (max(1, int(im.width * m.scale)), max(1, int(im.height * m.scale))))
        want = np.asarray(im if m.scale == 1.0 else im.resize((w, h), Image.Resampling.BICUBIC))
        assert np.array_equal(canvas[y : y + h, x : x + w], want)  # the input's pixels are there
        covered[y : y + h, x : x + w] += 1
    assert covered.max() == 1  # inputs do not overlap


def test_merge_without_scaling_is_pixel_exact_and_deterministic():
    a, b = _noise(30, 20, 1), _noise(10, 40, 2)
    m = merge_images([a, b], layout="horizontal", max_pixels=10_000)
    assert m.scale == 1.0 and m.image.size == (40, 40)
    assert np.array_equal(np.asarray(m.image.crop((0, 0, 30, 20))), np.asarray(a))
    assert np.array_equal(np.asarray(m.image.crop((30, 0, 40, 40))), np.asarray(b))
    assert np.asarray(m.image)[30, 5].tolist() == [255, 255, 255]  # free canvas is background
    again = merge_images([a, b], layout="horizontal", max_pixels=10_000)
    assert encode_png(again.image) == encode_png(m.image)


def test_auto_layout_prefers_square_canvas():
    assert choose_layout([(100, 20), (100, 20)]) == "vertical"  # 100x40 beats 200x20
    assert choose_layout([(20, 100), (20, 100)]) == "horizontal"
    assert choose_layout([(50, 50)] * 4) == "grid"


def test_merge_rejects_bad_arguments():
    with pytest.raises(ValueError, match="valid"):
        merge_images([_noise(4, 4, 0)], layout="diagonal")
    with pytest.raises(ValueError):
        merge_images([])


# ------------------------------------------------------------------------------------------- texts
text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60).filter(str.strip)


@settings(max_examples=60, deadline=None)
@given(ta=text, tb=text, ra=st.one_of(st.none(), text), rb=st.one_of(st.none(), text),
       na=st.integers(0, 2), nb=st.integers(0, 2))
def test_text_contains_both_texts_and_images_merge_into_one(ta, tb, ra, rb, na, nb):
    a = Sample(id="a", source="x", modality="text_image" if na else "text", request=ta, response=ra,
               images=tuple(_png(12, 9, k) for k in range(na)), label_request=U)
    b = Sample(id="b", source="y", modality="text_image" if nb else "text", request=tb, response=rb,
               images=tuple(_png(7, 16, 10 + k) for k in range(nb)), label_request=H)
    c = concat_samples(a, b, max_pixels=50_000)
    assert c.request == ta + SEPARATOR + tb
    assert ta in c.request and tb in c.request and c.request.index(ta) < c.request.rindex(tb)
    for r in (ra, rb):
        if r is not None and r.strip():
            assert r in (c.response or "")
    assert c.label_request == H
    assert len(c.images) == (0 if na + nb == 0 else 1)
    if na + nb == 1:
        assert c.images == a.images + b.images  # a single image is kept as is
    if na + nb >= 2:
        merged = decode_image(c.images[0])
        assert merged.width * merged.height <= 50_000
        assert c.provenance["layout"] in ("horizontal", "vertical", "grid")
    assert c.modality == ("text" if na + nb == 0 else "text_image")
    assert c.provenance["parents"] == ["a", "b"]
    assert concat_samples(a, b, max_pixels=50_000) == c  # deterministic (same id, same PNG bytes)


def test_image_only_parents_give_an_image_sample():
    a = _sample(1, H, None, False, n_images=1, text="")
    b = _sample(2, U, None, False, n_images=2, text="")
    c = concat_samples(a, b)
    assert c.modality == "image" and c.request == "" and len(c.images) == 1
    assert c.label_request == H


# ------------------------------------------------------------------------------------------- pairing
@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 50), k=st.integers(0, 120), seed=st.integers(0, 10**6))
def test_plan_pairs(n, k, seed):
    pairs = plan_pairs(n, k, seed)
    assert len(pairs) == k
    assert all(i != j and 0 <= i < n and 0 <= j < n for i, j in pairs)
    assert plan_pairs(n, k, seed) == pairs
    if pairs:  # each pass over a permutation uses a sample at most once
        uses = np.bincount(np.array(pairs, dtype=int).ravel(), minlength=n)
        assert uses.max() <= -(-k // (n // 2))


def test_plan_pairs_seeded_and_errors():
    assert plan_pairs(20, 10, seed=1) != plan_pairs(20, 10, seed=2)
    with pytest.raises(ValueError):
        plan_pairs(1, 1)
    assert plan_pairs(1, 0) == []


@pytest.mark.parametrize("n,share,want", [(800, 0.2, 200), (0, 0.2, 0), (100, 0.0, 0), (10, 0.5, 10), (9, 0.2, 2)])
def test_num_augmented(n, share, want):
    # 800 base + 200 joined = 1000, 200/1000 = 20%;  9 * 0.25 = 2.25 -> 2
    assert num_augmented(n, share) == want


def test_num_augmented_rejects_bad_share():
    with pytest.raises(ValueError):
        num_augmented(10, 1.0)
