"""Fixtures of the serving tests: tiny models with known behaviour (tests/integration/serving_models.py),
each built once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def keyword_guard_dir(tiny_model_dir, tmp_path_factory):
    from serving_models import build_keyword_guard

    return build_keyword_guard(tiny_model_dir, tmp_path_factory.mktemp("keyword-guard") / "model")


@pytest.fixture(scope="session")
def scripted_vlm_dir(tiny_model_dir, tmp_path_factory):
    from serving_models import build_scripted_vlm

    return build_scripted_vlm(tiny_model_dir, tmp_path_factory.mktemp("scripted-vlm") / "model")
