"""The judge must catch what is wrong and say where; the probe boundary must refuse anything but plain data."""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import (EXACT, F32, F64, Mismatch, Mistake, ProbeError, Tol, Unimplemented, assert_close,
                            central_difference, plain, raised, run_probe)


def test_equal_arrays_pass_and_tolerance_is_relative_plus_absolute():
    want = np.array([1.0, 100.0])
    assert_close(want + np.array([1e-7, 1e-5]), want, Tol(1e-7, 1e-6, "test"))
    with pytest.raises(Mismatch):
        assert_close(want + np.array([0.0, 1e-4]), want, Tol(1e-7, 1e-6, "test"))


def test_mismatch_names_the_worst_element_and_both_values():
    want = np.zeros((2, 3))
    got = want.copy()
    got[0, 1], got[1, 2] = 0.1, 0.5
    with pytest.raises(Mismatch) as caught:
        assert_close(got, want, F64, what="scores")
    message = str(caught.value)
    assert "scores: 2 of 6 values outside tolerance" in message
    assert "index (1, 2)" in message and "expected 0" in message and "got 0.5" in message
    assert "rtol=1e-09" in message  # the tolerance and its reason are shown


def test_shape_mismatch_and_mistake_signature():
    unreduced = Mistake("gradient not summed over the broadcast axes",
                        lambda got, want: np.shape(got) != np.shape(want) and np.size(got) > np.size(want))
    with pytest.raises(Mismatch) as caught:
        assert_close(np.ones((4, 3)), np.ones((1, 3)), F32, what="grad", mistakes=(unreduced,))
    assert "expected shape (1, 3), got shape (4, 3)" in str(caught.value)
    assert "likely mistake: gradient not summed over the broadcast axes" in str(caught.value)


def test_nan_where_finite_expected_is_reported():
    with pytest.raises(Mismatch) as caught:
        assert_close(np.array([0.5, np.nan]), np.array([0.5, 0.5]), F32)
    assert "NaN/inf where finite values were expected" in str(caught.value) and "index (1,)" in str(caught.value)


def test_expected_infinities_must_match_exactly():
    assert_close(np.array([-np.inf, 1.0]), np.array([-np.inf, 1.0]), F64)
    with pytest.raises(Mismatch):
        assert_close(np.array([np.inf, 1.0]), np.array([-np.inf, 1.0]), F64)


def test_structures_strings_and_integers():
    assert_close({"ids": [1, 2], "text": "ab"}, {"ids": [1, 2], "text": "ab"}, EXACT)
    with pytest.raises(Mismatch, match=r"out\['text'\]: expected 'ab', got 'ba'"):
        assert_close({"ids": [1, 2], "text": "ba"}, {"ids": [1, 2], "text": "ab"}, EXACT, what="out")
    with pytest.raises(Mismatch, match="expected keys"):
        assert_close({"ids": [1]}, {"ids": [1], "text": ""}, EXACT)
    with pytest.raises(Mismatch, match="expected a list of 2"):
        assert_close([1], [1, 2], EXACT)


class AlwaysEqual:
    def __eq__(self, other):
        return True


@pytest.mark.parametrize("value", [AlwaysEqual(), np.array([AlwaysEqual()], dtype=object), {1: 2}, [AlwaysEqual()]])
def test_plain_refuses_objects_that_could_rig_a_comparison(value):
    with pytest.raises(ProbeError):
        plain(value)


def test_plain_converts_numpy_scalars_and_copies_arrays():
    array = np.arange(3)
    converted = plain({"a": np.float32(1.5), "b": array, "c": (1, "x")})
    assert converted["a"] == 1.5 and type(converted["a"]) is float
    assert converted["b"] is not array and converted["c"] == [1, "x"]


def test_raised_records_exceptions_but_lets_not_implemented_through():
    record = raised(int, "x")
    assert record["raised"] == "ValueError" and record["builtin"] and "invalid literal" in record["message"]
    assert raised(int, "3") == {"call": "int", "mentions": [], "returned": 3}
    assert raised(object)["returned"] == "<object object>"  # not plain data: recorded by its type, not refused

    def stub():
        raise NotImplementedError("stage 01 (demo): stub")
    with pytest.raises(NotImplementedError):
        raised(stub)


def test_run_probe_turns_a_stub_into_a_clear_failure():
    def probe(m):
        raise NotImplementedError("stage 09 (demo): forward")
    with pytest.raises(Unimplemented, match=r"^NotImplementedError: stage 09 \(demo\): forward"):
        run_probe(probe, object(), {}, "exercises")


def test_central_difference_matches_a_known_gradient():
    x = np.array([[0.3, -1.2], [2.0, 0.5]])
    numeric = central_difference(lambda: float(np.sum(np.sin(x) * x)), x)
    # d/dx (x sin x) = sin x + x cos x; central differences with eps=1e-6 are accurate to ~1e-9
    assert_close(numeric, np.sin(x) + x * np.cos(x), Tol(0, 1e-8, "O(eps^2) truncation, O(1e-16/eps) rounding"))
    assert x[0, 0] == 0.3  # restored


def test_central_difference_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        central_difference(lambda: 0.0, np.zeros(2, dtype=np.float32))


def test_nan_where_nan_is_expected_matches():
    assert_close(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), F64)
    with pytest.raises(Mismatch):
        assert_close(np.array([np.inf, 1.0]), np.array([np.nan, 1.0]), F64)


def test_raised_records_are_judged_by_exact_builtin_type_and_what_the_message_names():
    want = raised(int, "x", mentions=("literal", ["base 10", "base ten"]))  # ValueError: invalid literal ... base 10
    assert_close(raised(int, "y"), want, EXACT)  # another input, the same kind and the same named problem

    def wording(message):
        def call():
            raise ValueError(message)
        return call
    assert_close(raised(wording("not a LITERAL in base 10")), want, EXACT)  # the wording is free, case too
    with pytest.raises(Mismatch, match="does not mention 'base 10' or 'base ten'"):
        assert_close(raised(wording("bad literal")), want, EXACT)

    class Custom(ValueError):
        pass
    disguised = type("ValueError", (ValueError, TypeError, KeyError), {"__module__": "builtins"})
    for kind in (Custom, disguised):
        def custom(kind=kind):
            raise kind("invalid literal in base 10")
        with pytest.raises(Mismatch, match="raise the builtin ValueError itself"):
            assert_close(raised(custom), want, EXACT)
    with pytest.raises(Mismatch, match=r"expected int to raise ValueError .*, but it raised TypeError"):
        assert_close(raised(int, [3]), want, EXACT)
    with pytest.raises(Mismatch, match=r"^output: expected int to raise ValueError .*, but it returned 3$"):
        assert_close(raised(int, "3"), want, EXACT)
    with pytest.raises(Mismatch, match=r"but it returned '<object object>'"):
        assert_close(raised(object), want, EXACT)
    with pytest.raises(Mismatch, match=r"expected int to return 3, but it raised ValueError"):
        assert_close(raised(int, "x"), raised(int, "3"), EXACT)
    with pytest.raises(Mismatch, match=r"expected the outcome of int, got 3"):
        assert_close(3, want, EXACT)  # a probe that did not go through raised()
    with pytest.raises(Mismatch, match=r"expected \{'merges': \[1\]\}, but int raised ValueError"):
        assert_close(want, {"merges": [1]}, EXACT)  # a record where the reference gave plain data


def test_none_against_an_array_is_a_clear_mismatch():
    with pytest.raises(Mismatch, match="grad: expected array"):
        assert_close(None, np.zeros(3), F64, what="grad")
    with pytest.raises(Mismatch, match="expected None"):
        assert_close(np.zeros(3), None, F64)
