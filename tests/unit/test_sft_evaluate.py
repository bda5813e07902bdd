"""``guardrl sft evaluate``'s figures, through the task: parse rate, accuracy by ``task.judge``, the
most-frequent-gold baseline."""

from __future__ import annotations

from guardrl.core.schema import Sample
from guardrl.stages.sft.evaluate import score
from guardrl.tasks import get_task


def _s(i: int, req: str | None, resp: str | None) -> Sample:
    return Sample(id=f"s{i}", source="t", modality="text", request="q", response="a" if resp else None,
                  label_request=req, label_response=resp)


def _out(req: str, resp: str = "None") -> str:
    return f"<think>\nx\n</think>\n<result>\nRequest: {req}\nResponse: {resp}\n</result>"


def test_score_by_hand():
    guard = get_task("guard")
    samples = [_s(0, "harmful", None), _s(1, "harmful", None), _s(2, "unharmful", "harmful"), _s(3, "harmful", None)]
    texts = [_out("harmful"),                # right
             _out("harmful", "unharmful"),   # right: the response is not labelled
             _out("unharmful", "unharmful"),  # request right, response wrong -> wrong
             "Request: harmful"]             # does not parse -> wrong
    j = [guard.judge(s, t) for s, t in zip(samples, texts, strict=True)]
    got = score(guard, samples, j)
    # parse rate 3/4; accuracy 2/4; the most frequent gold {harmful, None} is 3 of 4 samples
    assert got == {"parse_rate": 0.75, "accuracy": 0.5, "majority_accuracy": 0.75}
    assert [x.prediction for x in j] == ["harmful/none", "harmful/unharmful", "unharmful/unharmful", "format_failure"]
