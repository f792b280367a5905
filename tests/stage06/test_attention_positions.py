"""Stage 06 (attention), visible suite: positions (rotary embeddings, the sinusoidal table, ALiBi biases).

Every test compares with the reference AND checks values worked out by hand, an invariant of rotations, or central
differences of your own forward pass. Conventions: exercises/attention.py and docs/06-attention.md.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import F64, GRADCHECK, Mistake, Tol, assert_close, assert_true, seeded, sibling
from tests.stage06.helpers import (alibi_mistakes, looks_like, numpy_rope, probe_alibi, probe_rope, probe_rope_numeric,
                                   rope_mistakes)

ROUNDING = Tol(1e-9, 1e-12, "float64; the two sides are computed along different paths")


# ---------------------------------------------------------------- RoPE


@pytest.mark.concept("rope")
def test_rope_cache_values_worked_out_by_hand(check):
    # head_dim 4: θ_0 = 10000^0 = 1, θ_1 = 10000^(-2/4) = 1/100; angles p θ_i for p = 0, 1, 2.
    x = np.zeros((1, 1, 3, 4))
    angles = np.array([[0.0, 0.0], [1.0, 0.01], [2.0, 0.02]])
    mistakes = (Mistake("θ_i = base^(-i/Dh); it is base^(-2i/Dh)",
                        looks_like(np.cos(np.arange(3)[:, None] * 10000.0 ** (-np.arange(2) / 4)), "cos")),
                Mistake("positions start at 1; they are 0-indexed (row 0 is cos 0 = 1)",
                        looks_like(np.cos(angles + angles[1]), "cos")))
    got = check(probe_rope, x=x, weights=x, max_positions=3, tol=F64, what="rope_cache(4, 3)", mistakes=mistakes)
    assert_close(got["cos"], np.cos(angles), F64, "cos table: cos(p θ_i), rows p = 0, 1, 2, θ = (1, 1/100)", mistakes)
    assert_close(got["sin"], np.sin(angles), F64, "sin table: sin(p θ_i), rows p = 0, 1, 2, θ = (1, 1/100)")


@pytest.mark.concept("rope")
def test_rope_rotates_the_halves_pairing_i_with_i_plus_half(check):
    # Head h holds the basis vector e_h at positions 0 and 1. Position 0 is not rotated; at position 1 the pair
    # (x_0, x_2) turns by 1 radian and (x_1, x_3) by 1/100: R e_0 = (cos 1, 0, sin 1, 0), R e_2 = (-sin 1, 0, cos 1, 0).
    x = np.repeat(np.eye(4)[None, :, None, :], 2, axis=2)  # (1, 4, 2, 4)
    got = check(probe_rope, x=x, weights=x, max_positions=2, tol=F64, what="apply_rope of the basis vectors",
                mistakes=rope_mistakes(x))
    c1, s1, c2, s2 = math.cos(1), math.sin(1), math.cos(0.01), math.sin(0.01)
    want = np.stack([np.eye(4), [[c1, 0, s1, 0], [0, c2, 0, s2], [-s1, 0, c1, 0], [0, -s2, 0, c2]]], axis=1)[None]
    assert_close(got["out"], want, F64, "out[0, h, p] = R(p) e_h: p = 0 not rotated; at p = 1 "
                 "(x_0, x_2) turn by 1 and (x_1, x_3) by 1/100", rope_mistakes(x))


@pytest.mark.concept("rope")
def test_rope_scores_depend_only_on_the_offset_and_norms_are_kept(check):
    rng = seeded(620)
    q, k = rng.standard_normal(6), rng.standard_normal(6)
    x = np.stack([np.tile(q, (9, 1)), np.tile(k, (9, 1))])[None]  # (1, 2, 9, 6): q and k at every position 0..8
    got = check(probe_rope, x=x, weights=x, max_positions=9, tol=F64, what="RoPE of one q and one k at positions 0..8",
                mistakes=rope_mistakes(x))
    rotated_q, rotated_k = got["out"][0, 0], got["out"][0, 1]  # (9, 6) each
    scores = rotated_q @ rotated_k.T  # scores[m, n] = (R_m q) · (R_n k)
    assert_close(scores[1:, 1:], scores[:-1, :-1], ROUNDING,
                 "scores[m + 1, n + 1] vs scores[m, n]: shifting both positions must not change the score")
    assert_close(np.diag(scores), np.full(9, q @ k), ROUNDING, "(R_p q) · (R_p k) = q · k at every position p")
    assert_close(np.linalg.norm(got["out"], axis=-1), np.linalg.norm(x, axis=-1), ROUNDING,
                 "|R_p x| = |x|: a rotation keeps norms")


def probe_rope_offsets(m, x, offsets: list) -> dict:
    """apply_rope on the whole sequence, and on its tail from each offset p with offset=p."""
    tensor = sibling(m, "tensor")
    cos, sin = m.rope_cache(x.shape[-1], 16)
    full = m.apply_rope(tensor.Tensor(x, dtype=np.float64), cos, sin).data
    tails = [m.apply_rope(tensor.Tensor(x[:, :, p:], dtype=np.float64), cos, sin, offset=p).data for p in offsets]
    return {"full": full, "tails": tails}


@pytest.mark.concept("rope")
def test_rope_offset_equals_slicing_the_full_sequence(check):
    x = seeded(621).standard_normal((2, 3, 6, 4))
    got = check(probe_rope_offsets, x=x, offsets=[1, 3, 5], tol=F64, what="apply_rope with offsets",
                mistakes=rope_mistakes(x, key="full"))
    assert_close(got["full"], numpy_rope(x), ROUNDING, "apply_rope(x) vs the test's own rotate-half RoPE",
                 rope_mistakes(x))
    for p, tail in zip((1, 3, 5), got["tails"]):
        assert_close(tail, got["full"][:, :, p:], F64, f"apply_rope(x[:, :, {p}:], offset={p}) vs "
                     f"apply_rope(x)[:, :, {p}:] (the tokens sit at positions {p}.. either way)",
                     (Mistake("the offset is ignored: the tail is rotated as if it started at position 0",
                              lambda got, want, p=p: np.allclose(got, numpy_rope(x[:, :, p:]))),))


@pytest.mark.concept("rope")
def test_rope_backward_is_the_inverse_rotation(check, target):
    rng = seeded(622)
    inputs = {"x": rng.standard_normal((2, 2, 3, 4)), "weights": rng.standard_normal((2, 2, 3, 4)),
              "max_positions": 8, "offset": 2}
    mistakes = rope_mistakes(inputs["x"], 2) + (
        Mistake("backward rotates forward again; it must rotate by the opposite angle (the transpose)",
                looks_like(numpy_rope(inputs["weights"], 2), "grad")),)
    got = check(probe_rope, tol=F64, what="apply_rope, offset 2", mistakes=mistakes, **inputs)
    numeric = target.run(probe_rope_numeric, **inputs)
    assert_close(got["grad"], numeric, GRADCHECK, "apply_rope: backward() vs central differences of your forward",
                 mistakes)
    assert_close(got["grad"], numpy_rope(inputs["weights"], 2, inverse=True), ROUNDING,
                 "apply_rope's gradient = the upstream gradient rotated back by -p θ_i", mistakes)


# ---------------------------------------------------------------- sinusoidal positions


def probe_sinusoidal(m, max_positions: int, dim: int) -> np.ndarray:
    return np.asarray(m.sinusoidal_positions(max_positions, dim))


@pytest.mark.concept("sinusoidal")
def test_sinusoidal_values_worked_out_by_hand(check):
    # dim 4: frequencies 10000^(-0/4) = 1 and 10000^(-2/4) = 1/100; even columns sin, odd columns cos.
    want = np.array([[0.0, 1.0, 0.0, 1.0],
                     [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)],
                     [math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]])
    mistakes = (
        Mistake("sines fill the first half and cosines the second; they interleave: column 2i sin, 2i + 1 cos",
                looks_like(want[:, [0, 2, 1, 3]])),
        Mistake("sin and cos are swapped: column 2i is sin, column 2i + 1 is cos", looks_like(want[:, [1, 0, 3, 2]])),
        Mistake("positions start at 1; they are 0-indexed (row 0 is 0, 1, 0, 1, ...)",
                looks_like(np.roll(np.array([*want, [math.sin(3), math.cos(3), math.sin(0.03), math.cos(0.03)]]),
                                   -1, axis=0)[:3])),
    )
    got = check(probe_sinusoidal, max_positions=3, dim=4, tol=F64, what="sinusoidal_positions(3, 4)",
                mistakes=mistakes)
    assert_close(got, want, F64, "sinusoidal table, rows p = 0, 1, 2", mistakes)


# ---------------------------------------------------------------- ALiBi


@pytest.mark.concept("alibi")
def test_alibi_slopes_and_sign_convention(check):
    slopes = 0.5 ** np.arange(1, 9)  # H = 8: 2^(-8h/8) = 1/2, 1/4, ..., 1/256 for h = 1..8
    got = check(probe_alibi, heads=8, T=4, S=4, tol=F64, what="alibi_bias(8, 4, 4)",
                mistakes=alibi_mistakes(slopes, 4, 4))
    i, j = np.arange(4)[:, None], np.arange(4)[None, :]
    assert_close(got, slopes[:, None, None] * (j - i), F64, "bias[h, i, j] = slope_h · (j − i)",
                 alibi_mistakes(slopes, 4, 4))
    assert_close(-got[:, 1, 0], slopes, F64, "slopes 1/2, 1/4, ..., 1/256 (read off one step into the past)")
    assert_true(np.all(np.diagonal(got, axis1=1, axis2=2) == 0) and np.all(got[:, i > j] < 0),
                "the bias must be 0 on the diagonal and negative for every key in the past")


@pytest.mark.concept("alibi")
def test_alibi_with_cached_keys_uses_absolute_query_positions(check):
    # H = 4: slopes 2^(-2), 2^(-4), 2^(-6), 2^(-8). T = 2 queries after 3 cached keys: query i is at position 3 + i.
    slopes = np.array([2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8])
    got = check(probe_alibi, heads=4, T=2, S=5, tol=F64, what="alibi_bias(4, 2, 5)",
                mistakes=alibi_mistakes(slopes, 2, 5))
    distance = np.array([[-3, -2, -1, 0, 1], [-4, -3, -2, -1, 0]])  # j − (3 + i)
    assert_close(got, slopes[:, None, None] * distance, F64, "bias[h, i, j] = slope_h · (j − (S − T + i))",
                 alibi_mistakes(slopes, 2, 5))
