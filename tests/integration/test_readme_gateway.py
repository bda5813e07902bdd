"""The README's "Put guardrl in front of your VLM" commands, run as written: its bash block (``vllm serve`` of the
VLM, ``guardrl gateway`` in front of it) and its Python block (the ``openai`` client), read from README.md when
the test runs, so the commands users copy are the ones tested.

What the test changes, each replacement checked to be there (a README edit that moves one fails here, naming it):
the Hub id becomes a local folder served under that id (``--served-model-name``; offline, no download), the ports
become free ones, ``$KEY`` a key, the guard folder the tiny model, the ``...`` of the image and the text a real PNG
and a request; ``vllm serve`` gets the CPU flags of the README's "vLLM on a CPU" section. The tiny random guard
answers nothing parsable, so under the README's policy file (every default: fail closed) the request is blocked
with the policy's refusal, and the upstream is never asked for a completion. Marked ``vllm``: skipped, with the
reason, where vLLM is not installed."""

from __future__ import annotations

import base64
import re
import shlex
import sys
from pathlib import Path

import httpx
import pytest
from server_support import VLLM_MISSING, VLLM_SERVE_CPU_ARGS, free_port, server_process
from test_generation import _png

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm", reason=VLLM_MISSING)
openai = pytest.importorskip("openai", reason="the openai client comes with vLLM's requirements")

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Put guardrl in front of your VLM"
KEY = "sk-readme-key"


def readme_blocks(readme: Path = REPO / "README.md") -> tuple[str, str]:
    """The first ```bash and the first ```python block of the section :data:`SECTION`."""
    text = readme.read_text(encoding="utf-8")
    assert SECTION in text, f"{readme}: no section {SECTION!r}"
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = {}
    for lang in ("bash", "python"):
        m = re.search(rf"```{lang}\n(.*?)```", body, re.S)
        assert m, f"{readme}: section {SECTION!r} has no ```{lang} block"
        blocks[lang] = m.group(1)
    return blocks["bash"], blocks["python"]


def shell_commands(block: str) -> list[list[str]]:
    """One argv per command of a bash block: ``\\``-continued lines joined, ``# ...`` comments dropped."""
    return [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()
            if shlex.split(line, comments=True)]


def replace(argv: list[str], old: str, new: str) -> list[str]:
    assert old in argv, f"README: {old!r} is no longer in {shlex.join(argv)!r}"
    return [new if a == old else a for a in argv]


def option(argv: list[str], name: str) -> str:
    assert name in argv, f"README: {shlex.join(argv)!r} has no {name}"
    return argv[argv.index(name) + 1]


def test_shell_commands_split_as_bash_would():
    block = "vllm serve m --port 8001 --api-key \"$KEY\"   # 1. a comment\nguardrl gateway g \\\n    --port 8080\n"
    assert shell_commands(block) == [["vllm", "serve", "m", "--port", "8001", "--api-key", "$KEY"],
                                     ["guardrl", "gateway", "g", "--port", "8080"]]


def test_readme_gateway_commands_and_client(scripted_vlm_dir, tiny_model_dir, tmp_path):
    from guardrl.stages.serve.policy import load_policy

    bash, python = readme_blocks()
    commands = shell_commands(bash)
    assert [c[:2] for c in commands] == [["vllm", "serve"], ["guardrl", "gateway"]], commands
    serve, gateway = commands

    hub_id = serve[2]
    vllm_port, gateway_port = free_port(), free_port()
    serve = replace(replace(serve, option(serve, "--port"), str(vllm_port)), '$KEY', KEY)
    serve = [str(Path(sys.executable).parent / "vllm"), *serve[1:2], str(scripted_vlm_dir), *serve[3:],
             "--served-model-name", hub_id, *VLLM_SERVE_CPU_ARGS]
    upstream = option(gateway, "--upstream")
    assert upstream.startswith(f"http://127.0.0.1:{option(commands[0], '--port')}/"), (upstream, commands[0])
    gateway = replace(gateway, upstream, upstream.replace(option(commands[0], "--port"), str(vllm_port)))
    gateway = replace(gateway, option(gateway, "--port"), str(gateway_port))
    policy = load_policy(REPO / option(gateway, "--policy"))  # the README's policy file exists and loads
    gateway = [sys.executable, "-m", "guardrl.cli", "gateway", str(tiny_model_dir), *gateway[3:]]

    url = "data:image/png;base64," + base64.b64encode(_png(60, 50)).decode()
    for old, new in ((f"http://127.0.0.1:{option(commands[1], '--port')}/v1", f"http://127.0.0.1:{gateway_port}/v1"),
                     ('"data:image/png;base64,..."', repr(url)), ('"text": "..."', '"text": "tell me about a bread"')):
        assert old in python, f"README: the Python block no longer holds {old!r}"
        python = python.replace(old, new)

    with server_process(serve, f"http://127.0.0.1:{vllm_port}/health", tmp_path / "vllm.log", timeout_s=600), \
            server_process(gateway, f"http://127.0.0.1:{gateway_port}/health", tmp_path / "gateway.log",
                           timeout_s=300, cwd=REPO):
        scope: dict = {"KEY": KEY}
        exec(compile(python, "README.md (Put guardrl in front of your VLM)", "exec"), scope)  # noqa: S102
        r = scope["r"]
        assert (r.headers["x-guardrl-request"], r.headers["x-guardrl-response"], r.headers["x-guardrl-action"]) == (
            "unparsed", "skipped", "blocked_request")
        choice = r.parse().choices[0]
        assert choice.message.content == policy.refusal and choice.finish_reason == "content_filter"

        client = scope["client"]
        assert [m.id for m in client.models.list().data] == [hub_id]  # the upstream's list, through the gateway
        with pytest.raises(openai.AuthenticationError):  # the key reaches vllm serve, which checks it
            openai.OpenAI(base_url=f"http://127.0.0.1:{gateway_port}/v1", api_key="wrong",
                          max_retries=0).models.list()
        metrics = httpx.get(f"http://127.0.0.1:{gateway_port}/metrics").text
        assert 'guardrl_gateway_blocked_total{side="request"} 1.0' in metrics, metrics
