"""Build a tiny random-initialised Qwen2.5-VL offline: model, tokenizer, processor.

Same architecture class as Qwen2.5-VL-3B/7B (``Qwen2_5_VLForConditionalGeneration``,
vision tower included), a few million parameters, a byte-level BPE tokenizer
trained locally on the bundled corpus plus the guard prompt template, with
Qwen2.5-VL's special tokens and a chat template that places image tokens the
way Qwen2.5-VL's does. Nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "data" / "guard-mini" / "train.jsonl"

SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Jinja chat template: ChatML turns; an image item becomes
# <|vision_start|><|image_pad|><|vision_end|> (the processor expands the pad),
# as in Qwen2.5-VL. Written for guardrl; content may be a string or a list.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'video' or 'video' in item %}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Small but real: 14x14 patches merged 2x2, so an image is 4..64 vision tokens.
TINY_MIN_PIXELS = 28 * 28 * 4
TINY_MAX_PIXELS = 112 * 112


def _corpus_texts(corpus: Path | None) -> Iterator[str]:
    from guardrl.tasks.guard.parse import Verdict, format_verdict
    from guardrl.tasks.guard.prompts import instruction, render_input

    yield instruction()
    for req in ("harmful", "unharmful"):
        for resp in ("harmful", "unharmful", None):
            yield render_input("", resp) + format_verdict(
                Verdict(request=req, response=resp, reasoning="The request asks", format_ok=True)
            )
    if corpus and corpus.exists():
        with corpus.open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                yield row.get("prompt") or ""
                if row.get("response"):
                    yield row["response"]


def train_tokenizer(corpus: Path | None = None, vocab_size: int = 4096, texts: Iterable[str] | None = None):
    """Train a byte-level BPE tokenizer with Qwen2.5-VL's special tokens.

    Returns:
        A ``transformers`` fast tokenizer with the chat template set.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts if texts is not None else _corpus_texts(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
        model_max_length=32768,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(tokenizer, seed: int = 0):
    """A ``Qwen2_5_VLConfig`` of a few million parameters, ids matching ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    hidden, heads = 128, 4  # head_dim 32 -> mrope sections sum to 16
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=352,
            num_hidden_layers=4,
            num_attention_heads=heads,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_theta=10000.0,
            rope_scaling={"type": "mrope", "rope_type": "default", "mrope_section": [4, 6, 6]},
            tie_word_embeddings=True,
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=2,
            hidden_size=64,
            intermediate_size=128,
            num_heads=2,
            out_hidden_size=hidden,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[1],
            in_chans=3,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        vision_token_id=ids["<|vision_pad|>"],
        tie_word_embeddings=True,
    )


def build_processor(tokenizer, min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS):
    """A real ``Qwen2_5_VLProcessor`` with small pixel limits around ``tokenizer``."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor

    image_processor = Qwen2VLImageProcessor(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
    )
    video_processor = None
    try:
        from transformers import Qwen2VLVideoProcessor

        video_processor = Qwen2VLVideoProcessor(
            size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, patch_size=14, merge_size=2,
            temporal_patch_size=2,
        )
    except ImportError:  # pragma: no cover - depends on the transformers build
        pass
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_model(out_dir: str | Path, seed: int = 0, corpus: Path | None = None, vocab_size: int = 4096) -> Path:
    """Build and save the tiny model, tokenizer and processor into ``out_dir``.

    Deterministic for a seed: the same seed gives the same files' tensors.
    The folder loads with ``AutoProcessor`` / ``AutoModelForImageTextToText``
    with ``HF_HUB_OFFLINE=1`` and no ``trust_remote_code``.

    Returns:
        ``out_dir`` as a Path.
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    from guardrl.core.atomic import atomic_dir

    t0 = time.perf_counter()
    out = Path(out_dir)
    corpus = corpus if corpus is not None else DEFAULT_CORPUS
    tokenizer = train_tokenizer(corpus, vocab_size=vocab_size)
    config = tiny_config(tokenizer, seed=seed)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[config.text_config.eos_token_id, config.text_config.pad_token_id],
        pad_token_id=config.text_config.pad_token_id,
        do_sample=False,
    )
    processor = build_processor(tokenizer)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        (tmp / "guardrl_tiny.json").write_text(
            json.dumps({"seed": seed, "vocab_size": len(tokenizer), "corpus": str(corpus.name)}, indent=2)
        )
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tiny Qwen2.5-VL: %.2fM parameters, built in %.1fs -> %s", n_params / 1e6, time.perf_counter() - t0, out)
    return out


def reference_config(size: str):
    """The real Qwen2.5-VL-3B / 7B config (shapes only, no weights) shipped with guardrl."""
    from transformers import Qwen2_5_VLConfig

    path = CONFIG_DIR / f"qwen2_5_vl_{size.lower()}.json"
    if not path.exists():
        valid = sorted(p.stem.removeprefix("qwen2_5_vl_") for p in CONFIG_DIR.glob("qwen2_5_vl_*.json"))
        raise ValueError(f"unknown model size {size!r}; valid: {valid}")
    return Qwen2_5_VLConfig(**json.loads(path.read_text()))
