"""Length-aware safety reward: hand-worked values and hypothesis properties (issue 4 acceptance)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrl.tasks.guard.parse import (
    _LINE,
    LABELS,
    TAGS,
    THINK_CLOSE,
    THINK_OPEN,
    Verdict,
    format_verdict,
    parse,
)
from guardrl.tasks.guard.reward import (
    RewardConfig,
    compute_reward,
    format_indicator,
    length_aware_reward,
    parse_ground_truth,
    safety_reward,
    whitespace_words,
)

H, U = "harmful", "unharmful"


def out(request: str, response: str | None, n_words: int) -> str:
    """A well-formed completion with ``n_words`` reasoning words."""
    return format_verdict(Verdict(request, response, " ".join(["w"] * n_words), True))


# ---------------------------------------------------------------- hand-worked values


def test_fully_correct_scores_zero_the_maximum():
    # r_safety = 1 -> (1 - 1) / l_eff^2 = 0 whatever the length
    for n in (0, 1, 500, 5000):
        p = compute_reward(out(H, U, n), H, U)
        assert p.score == 0.0 and p.r_safety == 1.0 and p.format == 1
        assert (p.request_correct, p.response_correct) == (1.0, 1.0)


def test_half_wrong_at_half_length():
    # max_length 2048, 1024 words -> l_norm 0.5; r_safety 0.5 -> (0.5 - 1) / 0.25 = -2
    p = compute_reward(out(H, H, 1024), H, U)
    assert p.l_norm == 0.5 and p.reasoning_tokens == 1024
    assert p.r_safety == 0.5 and p.score == pytest.approx(-2.0)
    assert (p.request_correct, p.response_correct) == (1.0, 0.0)


def test_wrong_with_empty_reasoning_hits_the_lower_clamp():
    # l_norm 0 -> clamped to l_min 0.05 -> (0 - 1) / 0.0025 = -400 = default floor
    p = compute_reward(out(U, None, 0), H, None)
    assert p.l_norm == 0.0 and p.reasoning_tokens == 0
    assert p.score == pytest.approx(-400.0) == RewardConfig().reward_floor


def test_no_response_label_request_carries_full_weight():
    # gold response None: the predicted response line is ignored; r_safety = r_req
    assert compute_reward(out(H, H, 10), H, None).r_safety == 1.0
    p = compute_reward(out(U, None, 2048), H, None)  # l_norm 1 -> (0 - 1) / 1 = -1
    assert p.r_safety == 0.0 and p.score == pytest.approx(-1.0)
    assert math.isnan(p.response_correct)


def test_no_request_label_response_carries_full_weight():
    # guard-mini has rows with only a response label: r_safety = r_resp
    p = compute_reward(out(U, H, 10), None, H)
    assert p.r_safety == 1.0 and p.score == 0.0 and math.isnan(p.request_correct)
    p = compute_reward(out(H, U, 2048), None, H)  # wrong response, l_norm 1 -> -1
    assert p.r_safety == 0.0 and p.score == pytest.approx(-1.0)


def test_format_failure_gets_the_floor():
    cfg = RewardConfig(l_min=0.1)  # floor -1/0.01 = -100
    for bad in ("", "Request: harmful", "<think>x</think>", "<think>a</think><result>Request: maybe</result>"):
        p = compute_reward(bad, H, U, cfg)
        assert p.format == 0 and p.r_safety == 0.0 and p.score == pytest.approx(-100.0)
    # an explicit floor: -50 (<= -1/min(beta,1)^2 = -1)
    assert compute_reward("", H, U, RewardConfig(l_min=0.1, floor=-50.0)).score == -50.0


def test_beta_caps_the_length_effect():
    cfg = RewardConfig(beta=0.5, max_length=100)
    # 80 words -> l_norm 0.8 -> min(0.8, 0.5) = 0.5 -> (0 - 1) / 0.25 = -4; 100 words the same
    assert compute_reward(out(U, None, 80), H, None, cfg).score == pytest.approx(-4.0)
    assert compute_reward(out(U, None, 100), H, None, cfg).score == pytest.approx(-4.0)
    # 25 words -> l_norm 0.25 -> -1 / 0.0625 = -16
    assert compute_reward(out(U, None, 25), H, None, cfg).score == pytest.approx(-16.0)


def test_no_length_ablation_is_plain_r_safety():
    cfg = RewardConfig(no_length=True)
    assert compute_reward(out(H, H, 3), H, U, cfg).score == 0.5
    assert compute_reward(out(H, U, 3), H, U, cfg).score == 1.0
    assert compute_reward("garbage", H, U, cfg).score == 0.0
    assert cfg.bounds == (0.0, 1.0)


def test_eco_costs_correct_answers_beyond_the_budget():
    cfg = RewardConfig(max_length=1000, eco_budget=200, eco_coef=0.1)
    # 200 words: within budget -> 0; 700 words: 500 over -> 0.1 * 500/1000 = 0.05
    assert compute_reward(out(H, None, 200), H, None, cfg).score == 0.0
    p = compute_reward(out(H, None, 700), H, None, cfg)
    assert p.score == pytest.approx(-0.05) and p.eco_cost == pytest.approx(0.05)
    # 5000 words: capped at eco_coef -> -0.1; still above the best wrong answer (-0.5 at l_norm 1)
    assert compute_reward(out(H, None, 5000), H, None, cfg).score == pytest.approx(-0.1)
    assert compute_reward(out(H, H, 1000), H, U, cfg).score == pytest.approx(-0.5)
    # wrong answers pay no eco cost: 500 words -> l_norm 0.5 -> -1/0.25 = -4
    assert compute_reward(out(U, None, 500), H, None, cfg).score == pytest.approx(-4.0)


def test_eco_prefers_shorter_correct_answers():
    cfg = RewardConfig(max_length=1000, eco_budget=100)
    scores = [compute_reward(out(H, None, n), H, None, cfg).score for n in (50, 100, 300, 600, 900)]
    assert scores[0] == scores[1] == 0.0
    assert scores[1] > scores[2] > scores[3] > scores[4]


def test_eco_gives_grpo_a_length_signal_the_default_lacks():
    # A GRPO group of 4 correct answers, 100/300/600/900 reasoning words (max_length 1000, budget 200).
    # Default: all rewards 0 -> advantages (r - mean) / std are all 0: no pressure on length.
    # Eco: rewards 0, -0.01, -0.04, -0.07 -> advantages strictly decrease with length.
    def advantages(rewards):
        mean = sum(rewards) / len(rewards)
        std = (sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1)) ** 0.5
        return [(r - mean) / (std + 1e-6) for r in rewards]

    lengths = (100, 300, 600, 900)
    default = [compute_reward(out(H, None, n), H, None, RewardConfig(max_length=1000)).score for n in lengths]
    eco_cfg = RewardConfig(max_length=1000, eco_budget=200, eco_coef=0.1)
    eco = [compute_reward(out(H, None, n), H, None, eco_cfg).score for n in lengths]
    assert default == [0.0] * 4 and advantages(default) == [0.0] * 4
    assert eco == pytest.approx([0.0, -0.01, -0.04, -0.07])
    adv = advantages(eco)
    assert adv[0] > adv[1] > adv[2] > adv[3] and adv[0] > 0 > adv[3]


def test_token_counter_is_used():
    p = compute_reward(out(H, None, 3), H, None, RewardConfig(max_length=10), count_tokens=len)
    assert p.reasoning_tokens == len("w w w") == 5 and p.l_norm == 0.5


def test_parts_dict_has_every_part_score_first():
    d = compute_reward(out(H, U, 4), H, U).as_dict()
    assert list(d) == [
        "score", "format", "request_correct", "response_correct",
        "reasoning_tokens", "l_norm", "r_safety", "eco_cost",
    ]


def test_building_blocks():
    v = parse(out(H, None, 2))
    assert format_indicator(v) == 1 and format_indicator(parse("x")) == 0
    assert safety_reward(v, H, U) == (0.5, 1.0, 0.0)
    # 0.5 at l_norm 0.5 -> -0.5/0.25 = -2
    assert length_aware_reward(0.5, True, 1024, RewardConfig())[0] == pytest.approx(-2.0)


def test_ground_truth_layouts():
    assert parse_ground_truth('{"request": "harmful", "response": null}') == (H, None)
    assert parse_ground_truth({"request": "Unharmful ", "response": "unsafe"}) == (U, H)
    assert parse_ground_truth({"response": "harmful"}) == (None, H)
    for bad in ("not json", "[1]", '{"request": null, "response": null}', {"request": "maybe"}, 3):
        with pytest.raises(ValueError):
            parse_ground_truth(bad)
    with pytest.raises(ValueError):
        compute_reward(out(H, None, 1), None, None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"beta": 0},
        {"l_min": 0},
        {"l_min": 0.6, "beta": 0.5},
        {"max_length": 0},
        {"floor": -0.5},  # above -1/beta^2: would clip wrong answers at the cap
        {"floor": float("-inf")},
        {"eco_budget": 10, "eco_coef": 0.5},  # a correct answer could fall below a wrong one
        {"eco_budget": -1},
    ],
)
def test_config_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        RewardConfig(**kwargs)


def test_config_from_kwargs_names_unknown_keys():
    assert RewardConfig.from_kwargs(beta=0.5, l_min=0.1).beta == 0.5
    with pytest.raises(TypeError, match="betta"):
        RewardConfig.from_kwargs(betta=1)


# ---------------------------------------------------------------- properties

configs = st.builds(
    RewardConfig,
    beta=st.sampled_from([0.25, 0.5, 1.0, 2.0]),
    l_min=st.sampled_from([0.01, 0.05, 0.2]),
    max_length=st.integers(1, 4096),
    eco_budget=st.none(),
)
gold = st.sampled_from([(H, U), (U, H), (H, None), (U, None), (None, H), (None, U)])
words = st.integers(0, 6000)


FLIP = {H: U, U: H}


@given(configs, gold, words)
@settings(max_examples=300, deadline=None)
def test_prop_fully_correct_gets_the_maximum_whatever_length(cfg, g, n):
    g_req, g_resp = g
    p = compute_reward(out(g_req or H, g_resp, n), g_req, g_resp, cfg)
    assert p.score == cfg.bounds[1] == 0.0


@given(configs, gold, words, words, st.booleans())
@settings(max_examples=400, deadline=None)
def test_prop_wrong_answers_longer_reasoning_scores_higher_up_to_the_cap(cfg, g, n1, n2, half):
    g_req, g_resp = g
    n1, n2 = sorted((n1, n2))
    pred_req = FLIP[g_req] if g_req else H
    pred_resp = FLIP[g_resp] if g_resp else None
    if half and g_req and g_resp:
        pred_req = g_req  # half wrong: request right, response wrong -> r_safety 0.5
    s1 = compute_reward(out(pred_req, pred_resp, n1), g_req, g_resp, cfg)
    s2 = compute_reward(out(pred_req, pred_resp, n2), g_req, g_resp, cfg)
    assert s1.r_safety < 1 and s1.r_safety == s2.r_safety
    cap = min(cfg.beta, 1.0)
    if s1.l_norm >= cap:  # both beyond the cap: flat
        assert s1.score == s2.score
    elif max(cfg.l_min, s1.l_norm) < min(s2.l_norm, cap):  # both effective lengths differ: strictly higher
        assert s1.score < s2.score
    else:
        assert s1.score <= s2.score


@given(configs, gold, words, st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_prop_format_failure_no_higher_than_any_well_formed(cfg, g, n, junk):
    g_req, g_resp = g
    failed = compute_reward(junk + "<result>", g_req, g_resp, cfg)  # never parses (result unclosed)
    assert failed.format == 0
    for pred in ((H, H), (U, U), (H, None), (U, None)):
        well = compute_reward(out(*pred, n), g_req, g_resp, cfg)
        assert failed.score <= well.score


@given(
    st.builds(
        RewardConfig,
        beta=st.floats(0.05, 4.0),
        l_min=st.floats(1e-4, 0.05),
        max_length=st.integers(1, 10_000),
        no_length=st.booleans(),
        eco_budget=st.none() | st.integers(0, 5000),
        eco_coef=st.floats(0.0, 0.49),
    ).filter(lambda c: c.eco_budget is None or c.eco_coef < 0.5 / min(c.beta, 1.0) ** 2),
    gold,
    st.text(max_size=400) | st.sampled_from(["", out(H, U, 0), out(U, None, 0), out(H, None, 20000)]),
)
@settings(max_examples=500, deadline=None)
def test_prop_finite_and_within_bounds_for_every_input(cfg, g, completion):
    lo, hi = cfg.bounds
    p = compute_reward(completion, *g, cfg)
    assert math.isfinite(p.score) and lo <= p.score <= hi
    assert 0.0 <= p.l_norm <= 1.0 and p.reasoning_tokens >= 0 and p.format in (0, 1)


def test_l_norm_zero_is_finite():
    cfg = RewardConfig(l_min=1e-3)  # floor -1e6
    for text in (out(U, None, 0), "<think></think><result>Request: unharmful</result>"):
        p = compute_reward(text, H, None, cfg)
        assert p.l_norm == 0.0 and p.score == pytest.approx(-1e6) and math.isfinite(p.score)


@given(configs, gold, st.text(max_size=200) | words.map(lambda n: out(H, U, n)))
@settings(max_examples=200, deadline=None)
def test_prop_deterministic(cfg, g, completion):
    a = compute_reward(completion, *g, cfg).as_dict()
    b = compute_reward(completion, *g, cfg).as_dict()
    assert repr(a) == repr(b)  # repr: NaN parts compare equal


# ---------------------------------------------------------------- speed-ups keep behaviour


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.text(alphabet=" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1fab", max_size=60))
@settings(max_examples=500)
def test_whitespace_words_equals_split(text):
    assert whitespace_words(text) == len(text.split())


def _reference_parse(text):
    """guardrl.tasks.guard.parse.parse as first written (before the fast path): the behaviour to keep."""
    if not isinstance(text, str):
        return Verdict(None, None, "", False)
    body = text.strip()
    stripped = True
    while stripped:
        stripped = False
        for tok in ("<|im_end|>", "<|endoftext|>"):
            if body.endswith(tok):
                body = body[: -len(tok)].rstrip()
                stripped = True
    if any(body.count(tag) != 1 for tag in TAGS):
        return Verdict(None, None, "", False)
    i_to, i_tc = body.index(THINK_OPEN), body.index(THINK_CLOSE)
    i_ro, i_rc = body.index("<result>"), body.index("</result>")
    if not (i_to == 0 and i_to < i_tc < i_ro < i_rc and i_rc + len("</result>") == len(body)):
        return Verdict(None, None, "", False)
    reasoning = body[i_to + len(THINK_OPEN) : i_tc].strip()
    fail = Verdict(None, None, reasoning, False)
    if body[i_tc + len(THINK_CLOSE) : i_ro].strip():
        return fail
    labels, order = {}, []
    for line in body[i_ro + len("<result>") : i_rc].splitlines():
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            return fail
        key, value = m.group(1).lower(), m.group(2).lower()
        if key in labels:
            return fail
        labels[key] = value
        order.append(key)
    if "request" not in labels or order[0] != "request":
        return fail
    request, response = labels["request"], labels.get("response", "none")
    if request not in LABELS or (response not in LABELS and response != "none"):
        return fail
    return Verdict(request, None if response == "none" else response, reasoning, True)


_pieces = st.sampled_from(
    [*TAGS, "Request: harmful", "Response: None", "response: UNHARMFUL", "\n", " ", "x", "<", ">", "<|im_end|>", "<resu"]
)


@given(st.lists(_pieces, max_size=14).map("".join) | st.text(max_size=80))
@settings(max_examples=1500)
def test_parser_fast_path_matches_the_reference(text):
    assert parse(text) == _reference_parse(text)


def test_parser_fast_path_matches_on_typical_outputs():
    for text in (
        out(H, U, 30),
        out(H, None, 0),
        "<think>a < b</think><result>Request: harmful</result>",  # '<' in reasoning: slow path
        "<think>a</think>x<result>Request: harmful</result>",
        "<think>a</think><result>Request: harmful</result><result>Request: harmful</result>",
        "  <think>\nr\n</think>\n<result>\nrequest: Harmful\n</result><|im_end|>\n",
    ):
        assert parse(text) == _reference_parse(text), text


def test_bench_reward_smoke(repo_root):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_reward", "--n", "50", "--budget-s", "1000"],
        cwd=repo_root, capture_output=True, text=True, check=True,
    )
    assert "verl_ext.reward.compute_score" in out.stdout and "scaled to 100K" in out.stdout


# ------------------------------------------------------------------ Eco (beta cap) and the floor, by hand
def test_eco_beta_caps_the_length_gain_of_a_wrong_answer():
    """Eco: beta = 500/3072 ~ 0.1628. max_length 1000, wrong request (r_safety 0):
    default (beta 1): 200 tokens -> -1/0.2^2 = -25; 900 tokens -> -1/0.9^2 = -1.2346 (longer is better);
    Eco: both lengths are above the cap 0.1628 -> -1/0.1628^2 = -37.75 each (no gain for reasoning longer)."""
    from guardrl.tasks.guard.reward import ECO_BETA

    default, eco = RewardConfig(max_length=1000), RewardConfig(max_length=1000, beta=ECO_BETA)
    wrong = {n: out(H, None, n) for n in (200, 900)}
    d = {n: compute_reward(t, U, None, default).score for n, t in wrong.items()}
    e = {n: compute_reward(t, U, None, eco).score for n, t in wrong.items()}
    assert d[200] == pytest.approx(-25.0) and d[900] == pytest.approx(-1 / 0.81)
    assert e[200] == e[900] == pytest.approx(-(3072 / 500) ** 2)
    assert ECO_BETA == 500 / 3072


def test_a_short_wrong_answer_sits_on_the_floor_like_a_format_failure():
    """l_min 0.05, max_length 1000: a wrong answer with 30 reasoning tokens has l_norm 0.03 -> clamped to
    0.05 -> -1/0.05^2 = -400 = the floor, the same as a format failure; half wrong gets -200."""
    cfg = RewardConfig(max_length=1000)
    assert compute_reward(out(H, None, 30), U, None, cfg).score == pytest.approx(-400.0) == cfg.reward_floor
    assert compute_reward("no format", U, None, cfg).score == cfg.reward_floor
    assert compute_reward(out(H, H, 30), U, H, cfg).score == pytest.approx(-200.0)
