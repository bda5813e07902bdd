"""The gateway's policy file and its pure decisions (guardrl/stages/serve/policy.py)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from guardrl.stages.serve.gateway import refusal_completion, sse_events, user_parts, with_rewritten_request
from guardrl.stages.serve.policy import GatewayPolicy, PolicyError, load_policy
from guardrl.stages.serve.rewriter import RewriteError, read_rewrite

POLICY_FILE = Path(__file__).resolve().parents[2] / "guardrl" / "stages" / "serve" / "gateway_policy.yaml"


def test_the_shipped_policy_file_is_the_defaults():
    assert load_policy(POLICY_FILE) == GatewayPolicy() == load_policy(None)
    assert asdict(load_policy(POLICY_FILE)).keys() == asdict(GatewayPolicy()).keys()


@pytest.mark.parametrize(("text", "phrase"), [
    ("judge_requests: true\n", "unknown key(s) ['judge_requests']"),
    ("on_guard_error: maybe\n", "on_guard_error: 'maybe' is not one of ['closed', 'open']"),
    ("harmful_request: allow\n", "harmful_request"),
    ("judge_request: 'yes'\n", "judge_request: must be true or false"),
    ("max_concurrency: 0\n", "max_concurrency: must be a positive number"),
    ("upstream_timeout_s: fast\n", "upstream_timeout_s: must be a positive number"),
    ("refusal: ''\n", "refusal: must be a non-empty string"),
    ("- a list\n", "must be a mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_bad_policy_files_name_the_file_and_key(tmp_path, text, phrase):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert str(path) in str(err.value) and phrase in str(err.value)


def test_overrides_win_over_the_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("on_guard_error: open\njudge_response: false\n")
    p = load_policy(path, on_guard_error="closed", harmful_request=None)  # None: not given on the command line
    assert (p.on_guard_error, p.judge_response, p.harmful_request) == ("closed", False, "block")


# verdict: harmful / unharmful / None (the guard gave none)
@pytest.mark.parametrize(("policy", "verdict", "action"), [
    ({}, "harmful", "block"),
    ({}, "unharmful", "forward"),
    ({}, None, "block"),                                     # fail closed by default
    ({"on_guard_error": "open"}, None, "forward"),
    ({"judge_request": False}, None, "forward"),             # not judged: nothing to fail on
    ({"harmful_request": "rewrite"}, "harmful", "rewrite"),
    ({"harmful_request": "rewrite"}, "unharmful", "forward"),
    ({"harmful_request": "rewrite"}, None, "block"),         # no verdict is not "harmful": closed blocks
    ({"rewrite_all": True}, "unharmful", "rewrite"),
    ({"rewrite_all": True}, "harmful", "block"),             # harmful_request: block still blocks
    ({"rewrite_all": True, "on_guard_error": "open"}, None, "rewrite"),
])
def test_request_action(policy, verdict, action):
    assert GatewayPolicy(**policy).request_action(verdict) == action


@pytest.mark.parametrize(("policy", "verdict", "blocked"), [
    ({}, "harmful", True), ({}, "unharmful", False), ({}, None, True),
    ({"on_guard_error": "open"}, None, False), ({"on_guard_error": "open"}, "harmful", True),
])
def test_answer_blocked(policy, verdict, blocked):
    assert GatewayPolicy(**policy).answer_blocked(verdict) is blocked


def test_rewritten_request_is_blocked_if_still_harmful():
    p = GatewayPolicy(harmful_request="rewrite")
    assert [p.rewritten_action(v) for v in ("harmful", "unharmful", None)] == ["block", "forward", "block"]
    assert GatewayPolicy(harmful_request="rewrite", on_guard_error="open").rewritten_action(None) == "forward"


def test_user_parts_and_rewrite_of_the_last_user_turn():
    img = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    doc = {"messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "first"},
                        {"role": "assistant", "content": "ok"},
                        {"role": "user", "content": [img, {"type": "text", "text": "second"}]}]}
    text, images = user_parts(doc)
    assert text == "first\n\nsecond" and images == [img]  # system and assistant turns are not the request
    new = with_rewritten_request(doc, "safer")
    assert new["messages"][3]["content"] == [img, {"type": "text", "text": "safer"}]
    assert new["messages"][1]["content"] == "first" and doc["messages"][3]["content"][1]["text"] == "second"


def test_refusal_and_its_stream():
    out = refusal_completion({"model": "m"}, "no")
    assert out["choices"][0]["message"]["content"] == "no" and out["choices"][0]["finish_reason"] == "content_filter"
    events = list(sse_events({**out, "guardrl": {"action": "blocked_request"}}, include_usage=True))
    # one content chunk + one finish chunk for the choice, the usage chunk, then [DONE]
    assert len(events) == 4 and events[-1] == "data: [DONE]\n\n"
    assert '"guardrl": {"action": "blocked_request"}' in events[2] and '"usage"' in events[2]


def test_read_rewrite():
    assert read_rewrite("<think>x</think>\n<rewrite>\n how to bake bread \n</rewrite>", "tagged") == "how to bake bread"
    assert read_rewrite("  just this  ", "plain") == "just this"
    with pytest.raises(RewriteError, match="no <rewrite>"):
        read_rewrite("no block here", "tagged")
    with pytest.raises(RewriteError, match="empty"):
        read_rewrite("<rewrite> </rewrite>", "tagged")
