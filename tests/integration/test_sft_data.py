"""SFT encoding with the real (tiny) Qwen2.5-VL processor: assistant-only labels, images, cutoff."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from guardrl.core.schema import Sample
from guardrl.stages.sft.data import IGNORE_INDEX, SFTEncoder, collate, dummy_image_item, target_positions
from guardrl.tasks.guard.parse import Verdict, format_verdict

TARGET = format_verdict(Verdict("harmful", None, "The request asks for a weapon.", True))


def _png(w=60, h=50) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def _sample(modality="text_image", target=TARGET, request="How do I build a bomb?") -> Sample:
    images = () if modality == "text" else (_png(),)
    return Sample(id="s1", source="t", modality=modality, request=request, images=images,
                  label_request="harmful", target=target)


@pytest.mark.parametrize("modality", ["text", "image", "text_image"])
def test_labels_cover_exactly_the_assistant_answer(processor, modality):
    item = SFTEncoder(processor, max_seq_len=4096)(_sample(modality))
    ids, labels = item["input_ids"], item["labels"]
    trained = labels != IGNORE_INDEX
    # one contiguous block at the end of the sequence: the target and its <|im_end|>
    first = int(trained.nonzero()[0, 0])
    assert trained[first:].sum() == trained.sum()
    assert processor.tokenizer.decode(ids[trained]) == TARGET + "<|im_end|>"
    assert processor.tokenizer.decode(ids[:first]).endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert torch.equal(labels[trained], ids[trained])
    n_image_tokens = int((ids == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
    if modality == "text":
        assert "pixel_values" not in item and n_image_tokens == 0
    else:
        # one merged token per 2x2 patches: grid (t, h, w) -> t*h*w/4 tokens
        t, h, w = item["image_grid_thw"][0].tolist()
        assert n_image_tokens == t * h * w // 4 > 0
        assert item["pixel_values"].shape[0] == t * h * w
        assert not trained[ids == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")].any()


def test_cutoff_truncates_the_target_not_the_prompt(processor):
    enc = SFTEncoder(processor, max_seq_len=4096)
    full = enc(_sample())
    n_target = int((full["labels"] != IGNORE_INDEX).sum())
    cut = len(full["input_ids"]) - 5  # the untrained "\n" after <|im_end|> and 4 target tokens
    item = SFTEncoder(processor, max_seq_len=cut)(_sample())
    assert len(item["input_ids"]) == cut and not item["dropped"]
    assert int((item["labels"] != IGNORE_INDEX).sum()) == n_target - 4
    assert torch.equal(item["pixel_values"], full["pixel_values"])  # the image is untouched


def test_prompt_over_cutoff_becomes_a_label_free_placeholder(processor):
    item = SFTEncoder(processor, max_seq_len=40)(_sample(request="word " * 200))
    assert item["dropped"] and "pixel_values" not in item
    assert len(item["input_ids"]) <= 8 and (item["labels"] == IGNORE_INDEX).all()


def test_missing_target_is_an_error(processor):
    with pytest.raises(ValueError, match="no target"):
        SFTEncoder(processor, 512)(_sample(target=None))


def test_collate_pads_right_and_adds_a_dummy_image_to_text_only_batches(processor):
    enc = SFTEncoder(processor, 4096)
    a, b = enc(_sample("text")), enc(_sample("text", request="Hi"))
    dummy = dummy_image_item(processor)
    batch = collate([a, b], pad_id=0, dummy=dummy)
    assert batch["input_ids"].shape[0] == 3  # two samples + the dummy row
    assert (batch["labels"][2] == IGNORE_INDEX).all()
    assert batch["pixel_values"].shape[0] == int(batch["image_grid_thw"].prod(-1).sum())
    n_b = len(b["input_ids"])
    assert (batch["attention_mask"][1, :n_b] == 1).all() and (batch["attention_mask"][1, n_b:] == 0).all()
    assert (batch["labels"][1, n_b:] == IGNORE_INDEX).all()
    # with an image already present, no dummy
    c = enc(_sample("image", request=""))
    assert collate([a, c], pad_id=0, dummy=dummy)["input_ids"].shape[0] == 2


def test_target_positions_are_the_union_of_the_rows_next_token_targets():
    labels = torch.full((2, 8), IGNORE_INDEX)
    labels[0, 3:5] = 7  # predicted from positions 2, 3
    labels[1, 6:8] = 7  # predicted from positions 5, 6
    assert target_positions(labels).tolist() == [2, 3, 5, 6]
    assert target_positions(torch.full((2, 8), IGNORE_INDEX)).tolist() == [6]  # never empty


def test_loss_on_kept_logits_equals_the_full_logits_loss(tiny_model_dir, processor):
    """The trainer's ``logits_to_keep`` loss is the same number as cross-entropy over every position."""
    import torch.nn.functional as F
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    enc = SFTEncoder(processor, 4096)
    batch = collate([enc(_sample("text")), enc(_sample("text_image", request="Hi there, what is this?"))],
                    pad_id=processor.tokenizer.pad_token_id)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")}
    labels = batch["labels"]
    with torch.no_grad():
        full = model(**inputs).logits[:, :-1]
        ref = F.cross_entropy(full.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
        keep = target_positions(labels)
        kept = model(**inputs, logits_to_keep=keep).logits
        got = F.cross_entropy(kept.flatten(0, 1), labels[:, 1:][:, keep].flatten(), ignore_index=IGNORE_INDEX,
                              reduction="sum")
    assert kept.shape[1] == len(keep) < full.shape[1] // 2
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-4), (float(got), float(ref))
