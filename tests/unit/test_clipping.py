"""Clip schedules: hand-worked bounds, the registry, properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrl.core import clipping
from guardrl.core.clipping import DEFAULT_FLOOR, clip_bound, get_schedule, register_schedule, schedule_names


def test_linear_is_the_papers_schedule():
    # eps * (S - s) / S with eps 0.2, S 100
    assert clip_bound("linear", 0.2, 0, 100, 0.0) == pytest.approx(0.2)
    assert clip_bound("linear", 0.2, 25, 100, 0.0) == pytest.approx(0.15)
    assert clip_bound("linear", 0.2, 50, 100, 0.0) == pytest.approx(0.1)
    assert clip_bound("linear", 0.2, 99, 100, 0.0) == pytest.approx(0.002)
    assert clip_bound("linear", 0.2, 100, 100, 0.0) == 0.0


def test_floor_holds():
    # 0.2 * (100 - 99) / 100 = 0.002 < floor 0.01 -> 0.01; past the end stays on the floor
    assert clip_bound("linear", 0.2, 99, 100) == DEFAULT_FLOOR == 0.01
    assert clip_bound("linear", 0.2, 500, 100, 0.05) == 0.05
    assert clip_bound("cosine", 0.2, 100, 100, 0.03) == 0.03
    # 0.2 * 5/100 = 0.01 exactly at the default floor; one step earlier 0.012 is above it
    assert clip_bound("linear", 0.2, 94, 100) == pytest.approx(0.012)


def test_constant_and_cosine():
    assert [clip_bound("constant", 0.2, s, 10) for s in (0, 5, 10, 11)] == [0.2] * 4
    # 0.2 * (1 + cos(pi * s/S)) / 2: s=0 -> 0.2, s=S/2 -> 0.1, s=S/4 -> 0.1 * (1 + 0.7071) = 0.17071
    assert clip_bound("cosine", 0.2, 0, 100, 0.0) == pytest.approx(0.2)
    assert clip_bound("cosine", 0.2, 50, 100, 0.0) == pytest.approx(0.1)
    assert clip_bound("cosine", 0.2, 25, 100, 0.0) == pytest.approx(0.170711, abs=1e-6)
    assert clip_bound("cosine", 0.2, 100, 100, 0.0) == pytest.approx(0.0)


def test_negative_step_clamps_to_the_start():
    assert clip_bound("linear", 0.2, -3, 10) == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("eps", "step", "total", "floor"),
    [(0.0, 0, 10, 0.0), (-0.1, 0, 10, 0.0), (0.2, 0, 0, 0.0), (0.2, 0, 10, 0.3), (0.2, 0, 10, -0.01)],
)
def test_invalid_arguments_raise(eps, step, total, floor):
    for name in schedule_names():
        with pytest.raises(ValueError):
            clip_bound(name, eps, step, total, floor)


def test_registry():
    assert {"linear", "constant", "cosine"} <= set(schedule_names())
    assert get_schedule("linear") is clipping.linear
    with pytest.raises(ValueError, match="already registered"):
        register_schedule("linear")(lambda eps, s, S, f: eps)
    with pytest.raises(KeyError, match="valid:.*constant.*cosine.*linear"):
        get_schedule("exponential")

    @register_schedule("_test_half")
    def half(eps, step, total_steps, floor=0.0):
        return max(floor, eps / 2)

    try:
        assert clip_bound("_test_half", 0.2, 3, 10, 0.0) == 0.1
    finally:
        del clipping._SCHEDULES["_test_half"]


@given(
    st.sampled_from(["linear", "constant", "cosine"]),
    st.floats(1e-3, 1.0),
    st.integers(-10, 2000),
    st.integers(1, 1000),
    st.floats(0.0, 1.0),
)
@settings(max_examples=500)
def test_prop_bound_between_floor_and_eps(name, eps, step, total, floor_frac):
    floor = eps * floor_frac
    b = clip_bound(name, eps, step, total, floor)
    assert floor <= b <= eps + 1e-12


@given(st.sampled_from(["linear", "cosine"]), st.integers(1, 500), st.floats(0.0, 0.1))
@settings(max_examples=200)
def test_prop_decaying_schedules_never_increase(name, total, floor):
    bounds = [clip_bound(name, 0.2, s, total, floor) for s in range(total + 2)]
    assert all(a >= b - 1e-12 for a, b in zip(bounds, bounds[1:], strict=False))
    assert bounds[0] == pytest.approx(0.2)
