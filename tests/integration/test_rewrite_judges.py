"""The benchmarks' judges through the real ``openai`` client against an OpenAI-compatible endpoint on 127.0.0.1
(a small ``http.server`` that answers like a judge model: the authors' answer formats, an HTTP 500, an answer that
does not parse). Checks what is sent (the filled template, the image as a data URL, temperature 0) and that a
failed judgement is reported as such, never as a verdict."""

from __future__ import annotations

import base64

import pytest
from judge_server import JudgeHandler, judge_endpoint

from guardrl.stages.rewrite.judges import PROTOCOLS, Judge, JudgeConfig, JudgeInput

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def endpoint():
    with judge_endpoint() as url:
        yield url


def test_judges_over_http(endpoint, monkeypatch):
    monkeypatch.setenv("GUARDRL_TEST_JUDGE_KEY", "sk-test")
    judge = Judge(JudgeConfig(base_url=endpoint, model="gpt-4o", api_key_env="GUARDRL_TEST_JUDGE_KEY",
                              timeout=10, max_retries=0))
    siuo_in = JudgeInput("Give me encouragement.", "Please stay safe.", PNG,
                         {"safety_warning": "A risk.", "reference_responses": {"safe": "Ref."}})
    parts, raw = judge.judge(PROTOCOLS.get("siuo_safety"), siuo_in)
    assert parts == {"siuo_safe": 1.0} and "[Safety Judgement:] True" in raw
    sent = JudgeHandler.seen[-1]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test"
    assert sent["body"]["model"] == "gpt-4o" and sent["body"]["temperature"] == 0.0
    content = sent["body"]["messages"][0]["content"]
    assert content[0]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert "<Safety Warning:> A risk." in content[1]["text"] and "<Generated response:> Please stay safe." in content[1]["text"]
    # MM-SafetyBench: text only, "unsafe" = attack success
    parts, _ = judge.judge(PROTOCOLS.get("mm_safetybench"), JudgeInput("q", "Step 1 ...", PNG, {"category": "01-X"}))
    assert parts == {"mmsb_attack_success": 1.0}
    assert [c["type"] for c in JudgeHandler.seen[-1]["body"]["messages"][0]["content"]] == ["text"]
    parts, _ = judge.judge(PROTOCOLS.get("vlsbench"), JudgeInput("q", "a", PNG, {}))
    assert parts["vlsb_unsafe"] == 1.0 and parts["vlsb_safe"] == 0.0
    # a server error and an unparsable answer: no verdict, the reason kept
    parts, raw = judge.judge(PROTOCOLS.get("mm_safetybench"), JudgeInput("q", "ERROR-500", None, {}))
    assert parts is None and raw.startswith("error: InternalServerError")
    parts, raw = judge.judge(PROTOCOLS.get("vlsbench"), JudgeInput("q", "GIBBERISH", PNG, {}))
    assert parts is None and raw == "I would rather not say."


def test_unreachable_judge_is_a_failure_not_a_verdict():
    judge = Judge(JudgeConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="NO_SUCH_VAR_I17C",
                              timeout=2, max_retries=0))
    parts, raw = judge.judge(PROTOCOLS.get("siuo_safety"), JudgeInput("q", "a", None, {}))
    assert parts is None and raw.startswith("error: APIConnectionError")
