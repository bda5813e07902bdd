"""isolate_failures: one bad item in a batched call fails alone; the others are still answered."""

from __future__ import annotations

import pytest

from guardrl.generation.base import PromptTooLongError, isolate_failures


def _fn(calls: list[list[int]]):
    def fn(items: list[int]) -> list[int]:
        calls.append(list(items))
        if any(x < 0 for x in items):
            raise PromptTooLongError(f"input {min(items)} is too long")
        return [x * 10 for x in items]
    return fn


def test_a_good_batch_is_one_call():
    calls: list[list[int]] = []
    assert isolate_failures(_fn(calls), [1, 2, 3]) == ([10, 20, 30], [None, None, None])
    assert calls == [[1, 2, 3]]


def test_only_the_bad_item_fails():
    calls: list[list[int]] = []
    results, errors = isolate_failures(_fn(calls), [1, -2, 3], (PromptTooLongError,))
    assert results == [10, None, 30]
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], PromptTooLongError) and "input -2" in str(errors[1])
    assert calls == [[1, -2, 3], [1], [-2], [3]]


def test_an_error_that_is_not_refused_propagates():
    def broken(items: list[int]) -> list[int]:
        raise RuntimeError("engine died")

    with pytest.raises(RuntimeError, match="engine died"):
        isolate_failures(broken, [1, 2])
    with pytest.raises(PromptTooLongError):  # refused=(KeyError,): a ValueError is not isolated
        isolate_failures(_fn([]), [-1], (KeyError,))
