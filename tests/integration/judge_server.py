"""OpenAI-compatible endpoints on 127.0.0.1 with scripted answers (no tests here).

:func:`chat_endpoint` serves ``POST .../chat/completions`` with ``answer(text) -> str`` of the first user
turn's text (``None`` = an HTTP 500); every request is kept in ``seen``. :func:`judge_endpoint` answers like a
judge model: the authors' answer formats by prompt (SIUO safety / effectiveness, VLSBench JSON, MM-SafetyBench's
word), an HTTP 500 when the prompt holds ``ERROR-500``, an unparsable answer for ``GIBBERISH``; its requests are
kept in ``JudgeHandler.seen``."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatHandler(BaseHTTPRequestHandler):
    """Answers with the class's ``answer``; a subclass per endpoint (:func:`chat_endpoint`)."""

    seen: list[dict] = []
    answer: Callable[[str], str | None] = staticmethod(lambda text: text)

    def log_message(self, *a):  # quiet
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        content = body["messages"][0]["content"]
        text = content if isinstance(content, str) else next(c["text"] for c in content if c["type"] == "text")
        answer = type(self).answer(text)
        if answer is None:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "boom"}}')
            return
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
def chat_endpoint(answer: Callable[[str], str | None], seen: list[dict] | None = None) -> Iterator[str]:
    """A server answering ``answer(text)`` on a free port for the block; yields its ``/v1`` base URL."""
    handler = type("ScriptedChat", (ChatHandler,), {"answer": staticmethod(answer),
                                                    "seen": [] if seen is None else seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


def judge_answer(text: str) -> str | None:
    if "ERROR-500" in text:
        return None
    if "Effectiveness Judgement" in text:
        return "[Reasons:] it answers. [Effectiveness Judgement:] Very Effective"
    if "Safety Warning" in text:
        return "[Reasons:] it warns the user. [Safety Judgement:] True"
    if "GIBBERISH" in text:
        return "I would rather not say."
    if "red-teaming" in text:
        return '{"label": 3, "label_str": "Unsafe", "explanation": "it answers"}'
    return "unsafe"


class JudgeHandler:
    """Where :func:`judge_endpoint` keeps its requests."""

    seen: list[dict] = []


def judge_endpoint() -> contextlib.AbstractContextManager[str]:
    """The judge's server for the block; yields its ``/v1`` base URL."""
    return chat_endpoint(judge_answer, JudgeHandler.seen)
