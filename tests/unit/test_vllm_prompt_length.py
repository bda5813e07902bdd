"""The vLLM engine's prompt-length rule, checked without vLLM (the engine module imports it lazily)."""

from __future__ import annotations

import pytest

from guardrl.generation.base import PromptTooLongError
from guardrl.generation.vllm import check_prompt_length


def test_prompt_that_fits_passes():
    check_prompt_length("a", 1900, 2048, 148)  # 1900 + 148 = 2048: exactly fits
    check_prompt_length("a", 0, 2048, 2048)


def test_one_token_over_is_refused_naming_input_and_limit():
    # 1901 + 148 = 2049 > 2048
    with pytest.raises(PromptTooLongError, match=r"input long-1: the prompt is 1,901 tokens; the engine takes "
                                                 r"2,048 \(max_model_len\), 148 of them kept for new tokens"):
        check_prompt_length("long-1", 1901, 2048, 148)


def test_is_a_schema_error_like_the_hf_engines():
    from guardrl.core.schema import SchemaError

    with pytest.raises(SchemaError):
        check_prompt_length("x", 10, 8, 0)
