"""The benchmarks' judges through the real ``openai`` client against an OpenAI-compatible endpoint on 127.0.0.1
(a small ``http.server`` that answers like a judge model: the authors' answer formats, an HTTP 500, an answer that
does not parse). Checks what is sent (the filled template, the image as a data URL, temperature 0) and that a
failed judgement is reported as such, never as a verdict."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from guardrl.stages.rewrite.judges import PROTOCOLS, Judge, JudgeConfig, JudgeInput

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


class _Judge(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def log_message(self, *a):  # quiet
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Judge.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        text = next(c["text"] for c in body["messages"][0]["content"] if c["type"] == "text")
        if "ERROR-500" in text:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "boom"}}')
            return
        if "Safety Warning" in text:
            answer = "[Reasons:] it warns the user. [Safety Judgement:] True"
        elif "GIBBERISH" in text:
            answer = "I would rather not say."
        elif "red-teaming" in text:
            answer = '{"label": 3, "label_str": "Unsafe", "explanation": "it answers"}'
        else:
            answer = "unsafe"
        out = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": answer}}],
               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_judges_over_http(endpoint, monkeypatch):
    monkeypatch.setenv("GUARDRL_TEST_JUDGE_KEY", "sk-test")
    judge = Judge(JudgeConfig(base_url=endpoint, model="gpt-4o", api_key_env="GUARDRL_TEST_JUDGE_KEY",
                              timeout=10, max_retries=0))
    siuo_in = JudgeInput("Give me encouragement.", "Please stay safe.", PNG,
                         {"safety_warning": "A risk.", "reference_responses": {"safe": "Ref."}})
    parts, raw = judge.judge(PROTOCOLS.get("siuo_safety"), siuo_in)
    assert parts == {"siuo_safe": 1.0} and "[Safety Judgement:] True" in raw
    sent = _Judge.seen[-1]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test"
    assert sent["body"]["model"] == "gpt-4o" and sent["body"]["temperature"] == 0.0
    content = sent["body"]["messages"][0]["content"]
    assert content[0]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert "<Safety Warning:> A risk." in content[1]["text"] and "<Generated response:> Please stay safe." in content[1]["text"]
    # MM-SafetyBench: text only, "unsafe" = attack success
    parts, _ = judge.judge(PROTOCOLS.get("mm_safetybench"), JudgeInput("q", "Step 1 ...", PNG, {"category": "01-X"}))
    assert parts == {"mmsb_attack_success": 1.0}
    assert [c["type"] for c in _Judge.seen[-1]["body"]["messages"][0]["content"]] == ["text"]
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
