"""An OpenAI-compatible endpoint on 127.0.0.1 that answers like a judge model (no tests here): the authors' answer
formats by prompt (SIUO safety / effectiveness, VLSBench JSON, MM-SafetyBench's word), an HTTP 500 when the prompt
holds ``ERROR-500``, an unparsable answer for ``GIBBERISH``. Every request is kept in ``JudgeHandler.seen``."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JudgeHandler(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def log_message(self, *a):  # quiet
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        JudgeHandler.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        text = next(c["text"] for c in body["messages"][0]["content"] if c["type"] == "text")
        if "ERROR-500" in text:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "boom"}}')
            return
        if "Effectiveness Judgement" in text:
            answer = "[Reasons:] it answers. [Effectiveness Judgement:] Very Effective"
        elif "Safety Warning" in text:
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


@contextlib.contextmanager
def judge_endpoint() -> Iterator[str]:
    """The server on a free port for the block; yields its ``/v1`` base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), JudgeHandler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
