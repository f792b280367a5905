"""Stage 16 (serving small and fast), visible suite: weight quantization.

Hand-worked cases fix the conventions (per output column, symmetric, round half to even, float16 scales rounded up,
low nibble first); the error bound |w - q·s| <= s/2 is checked element by element on random weights and on
adversarial ones (a zero column, a single outlier, a negative maximum); a QuantizedLinear must match the float Linear
within the bound propagated through the matmul, and a quantized model must hold no Linear and the bytes counted by
hand.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F32, Mistake, assert_close, assert_true, raised, seeded, sibling
from tests.stage16.helpers import (TINY, bound_allowance, probe_int4, probe_int8, probe_pack, probe_quantized_linear,
                                   probe_quantized_model, weights_with_outliers)


def probe_pack_refusal(m, q: list) -> dict:
    return raised(m.pack_int4, np.array(q), mentions=("pack_int4",))


def probe_group_refusal(m, group: int) -> dict:
    return raised(m.quantize_int4, np.ones((8, 2)), group, mentions=("group",))


def probe_bits_refusal(m, bits: int) -> dict:
    return raised(m.QuantizedLinear, sibling(m, "nn").Linear(4, 2, rng=seeded(0)), bits=bits, mentions=("bits",))


def judge_bound(got: dict, w: np.ndarray, scale_per_element: np.ndarray, what: str) -> None:
    error = np.abs(w - got["deq"].astype(np.float64))
    limit = scale_per_element / 2 + bound_allowance(w, scale_per_element)
    worst = np.unravel_index(np.argmax(error - limit), w.shape)
    assert_true(bool(np.all(error <= limit)),
                f"{what}: |w - deq(q(w))| must be <= scale / 2 everywhere; at {worst} w = {w[worst]:.6g}, deq = "
                f"{got['deq'][worst]:.6g}, scale = {scale_per_element[worst]:.6g}: error {error[worst]:.6g} > "
                f"{limit[worst]:.6g}. A scale from max w instead of max |w|, a floor instead of a round, or a scale "
                f"that rounded down (so the largest |w| / scale passed the clip) errs this way.")


@pytest.mark.concept("int8")
def test_int8_by_hand(check):
    # Column 0: max |w| = 127, scale 1: 1 -> 1, 0.5 -> 0 (half to even), 127 -> 127. Column 1: max |w| = 4 (a negative
    # -4 would do the same), scale 4/127: -2 -> -63.5 -> -64 (half to even), 0 -> 0, 4 -> 127.
    w = np.array([[1.0, -2.0], [0.5, 0.0], [127.0, 4.0]])
    got = check(probe_int8, w=w, tol=EXACT, what="quantize_int8 on a hand case")
    assert_close(got["q"], np.array([[1, -64], [0, 0], [127, 127]]), EXACT, "q",
                 mistakes=(Mistake("the scale is per output channel: a COLUMN of the (in, out) weight, not a row",
                                   lambda got, want: got[2, 0] != 127),))
    assert_close(got["scale"], np.array([1.0, 4 / 127], dtype=np.float32), EXACT, "scale: max |column| / 127, float32")
    assert_close(got["dtypes"], ["int8", "float32", "float32"], EXACT, "dtypes of q, scale, dequantized")


@pytest.mark.concept("error-bound")
def test_int8_error_bound_on_random_and_adversarial_weights(check):
    for seed, shape in ((1600, (64, 5)), (1601, (7, 9))):
        w = weights_with_outliers(seed, *shape)
        got = check(probe_int8, w=w, tol=F32, what=f"int8 of a {shape} weight")
        scale = np.broadcast_to(got["scale"].astype(np.float64), w.shape)
        judge_bound(got, w, scale, f"int8, seed {seed}")
        assert_close(got["deq"][:, 1], np.zeros(shape[0]), EXACT, "a zero column dequantizes to exact zeros")
        assert_close(np.abs(got["q"]).max(axis=0)[[0, 2, 3]], np.full(3, 127), EXACT,
                     "each non-zero column's largest |w| maps to +-127 (the whole int8 range is used)")


@pytest.mark.concept("int4-pack")
def test_pack_int4_by_hand_and_round_trip(check):
    # (-8, 7) -> low 0, high 15: 0xF0 = 240; (1, -1) -> low 9, high 7: 9 + 7·16 = 121; (0, 0) -> 8 + 8·16 = 136.
    q = np.array([[-8, 1, 0], [7, -1, 0]])
    got = check(probe_pack, q=q, tol=EXACT, what="pack_int4 by hand")
    assert_close(got["packed"], np.array([[240, 121, 136]]), EXACT, "packed bytes",
                 mistakes=(Mistake("row 2i goes in the LOW nibble, row 2i + 1 in the high one",
                                   lambda got, want: got[0, 0] == 15),))
    every = np.array(np.meshgrid(np.arange(-8, 8), np.arange(-8, 8))).reshape(2, -1)  # all 256 pairs, (2, 256)
    got = check(probe_pack, q=every, tol=EXACT, what="pack_int4 of every pair")
    assert_close(got["unpacked"], every, EXACT, "unpack_int4(pack_int4(q)) == q for all 256 pairs")
    assert_close(got["dtype"], "uint8", EXACT, "packed dtype")


@pytest.mark.concept("int4-pack")
def test_pack_int4_rejects_odd_rows_and_out_of_range(check):
    check(probe_pack_refusal, q=[[1], [2], [3]], tol=EXACT, what="three rows")
    check(probe_pack_refusal, q=[[8], [0]], tol=EXACT, what="8 is not an int4 value")
    got = check(probe_pack_refusal, q=[[7], [-8]], tol=EXACT, what="the extremes are accepted")
    assert_close("returned" in got, True, EXACT, "pack_int4([[7], [-8]]) returns")


@pytest.mark.concept("int4")
def test_int4_by_hand_with_the_float16_scale_rounded_up(check):
    # group 2: column 0 groups (0.7, -1.4) and (0, 0). 1.4 / 7 = 0.2, but float16(0.2) = 0.199951171875 < 0.2: then
    # 1.4 / s > 7 and the outlier would be clipped, so s rounds UP to the next float16, 0.2000732421875.
    # q = round(0.7 / s) = round(3.4987) = 3, round(-6.9974) = -7. The zero group: s = 0, q = 0.
    w = np.array([[0.7], [-1.4], [0.0], [0.0]])
    got = check(probe_int4, w=w, group=2, tol=EXACT, what="quantize_int4, group 2")
    assert_close(got["scale"], np.array([[0.2000732421875], [0.0]], dtype=np.float16), EXACT, "float16 scales",
                 mistakes=(Mistake("float16(max / 7) rounded down here: round it up with np.nextafter",
                                   lambda got, want: got[0, 0] == np.float16(0.2)),))
    assert_close(got["q"], np.array([[3], [-7], [0], [0]]), EXACT, "the int4 values, unpacked")
    assert_close(got["dtypes"], ["uint8", "float16", "float32"], EXACT, "dtypes of packed, scale, dequantized")


@pytest.mark.concept("error-bound")
def test_int4_error_bound_with_padding_and_outliers(check):
    # 70 rows in groups of 32: three groups, the last padded with 26 zero rows; packed (48, out).
    for seed, group in ((1602, 32), (1603, 8)):
        w = weights_with_outliers(seed, 70, 4)
        got = check(probe_int4, w=w, group=group, tol=F32, what=f"int4, group {group}")
        groups = -(-70 // group)
        assert_close(got["packed"].shape, (groups * group // 2, 4), EXACT, "packed shape: padded rows / 2")
        scale = np.repeat(got["scale"].astype(np.float64), group, axis=0)[:70]  # (70, 4): each row its group's
        judge_bound(got, w, scale, f"int4, group {group}")
        assert_true(bool(np.all(np.abs(got["q"]) <= 7)), "int4 values must lie in [-7, 7] (symmetric: -8 unused)")


@pytest.mark.concept("int4")
def test_int4_group_must_be_even(check):
    check(probe_group_refusal, group=3, tol=EXACT, what="an odd group cannot be packed two rows per byte")
    got = check(probe_group_refusal, group=4, tol=EXACT, what="group 4 is accepted")
    assert_close("returned" in got, True, EXACT, "quantize_int4(group=4) returns")


@pytest.mark.concept("quantized-linear")
def test_quantized_linear_stays_within_the_propagated_bound(check):
    # y_j - y_float_j = sum_i x_i (deq_ij - w_ij): at most sum_i |x_i| s_ij / 2 (+ float32 roundings of the sums of
    # 70 products: 2^-20 relative to sum |x_i w_ij| is generous for them).
    rng = seeded(1604)
    w, bias, x = weights_with_outliers(1604, 70, 6), rng.standard_normal(6), rng.standard_normal((3, 70))
    for bits, group in ((8, 32), (4, 32), (4, 16)):
        got = check(probe_quantized_linear, w=w, bias=bias, x=x, bits=bits, group=group, tol=F32,
                    what=f"QuantizedLinear, {bits} bits")
        w32 = w.astype(np.float32).astype(np.float64)
        exact = x.astype(np.float32).astype(np.float64) @ got["weight"].astype(np.float64) + bias.astype(np.float32)
        assert_close(got["y"], exact, F32, f"{bits} bits: y = x @ (dequantized weight) + bias")
        error = np.abs(got["y"] - (x @ w32 + bias))
        limit = np.abs(x) @ np.abs(got["weight"] - w32) + 2.0**-20 * (np.abs(x) @ np.abs(w32) + np.abs(bias))
        assert_true(bool(np.all(error <= limit + 1e-6)), f"{bits} bits: |y - y_float| exceeds sum |x| |deq - w|")
    got = check(probe_quantized_linear, w=w, bias=bias, x=x, bits=4, group=32, tol=F32, what="int4 bytes")
    assert_close(got["nbytes"], 48 * 6 + 3 * 6 * 2 + 6 * 4, EXACT,
                 "nbytes, int4 group 32: packed 48·6, float16 scales 3·6·2, float32 bias 6·4")


@pytest.mark.concept("quantized-linear")
def test_quantized_linear_rejects_other_bits(check):
    check(probe_bits_refusal, bits=2, tol=EXACT, what="2 bits is not supported")
    got = check(probe_bits_refusal, bits=8, tol=EXACT, what="8 bits is accepted")
    assert_close(got["returned"], "<QuantizedLinear object>", EXACT, "QuantizedLinear(bits=8) builds")


@pytest.mark.concept("quantized-linear")
def test_quantize_model_replaces_every_linear_and_counts_bytes(check):
    ids = seeded(1605).integers(0, TINY["vocab_size"], (2, 7))
    # TINY: width 16, SwiGLU hidden 8·ceil(16/3) = 48, per block q, k, v, o (16, 16) and gate, up (16, 48), down
    # (48, 16); tied head. Float32: token table 11·16, per block 4·256 + 3·768 + two norms 2·16 = 3360, final norm 16:
    # (176 + 2·3360 + 16)·4 = 27,648 bytes. int8: per block the 7 matrices' 3328 bytes of q + float32 scales
    # (4·16 + 2·48 + 16)·4 = 704, norms 128: 4160 per block; 704 + 2·4160 + 64 = 9,088.
    got = check(probe_quantized_model, fields=TINY, seed=1605, bits=8, group=32, ids=ids, tol=F32,
                what="an int8 model's logits")
    assert_close([got["bytes_before"], got["bytes_after"]], [27_648, 9_088], EXACT, "weight_bytes before, after int8")
    assert_close(got["linears_left"], [], EXACT, "Linear modules left in the quantized model (lists included)")
    got = check(probe_quantized_model, fields=dict(TINY, tie_embeddings=False), seed=1606, bits=4, group=16,
                ids=ids, tol=F32, what="an int4 model with an untied head")
    assert_close(got["linears_left"], [], EXACT, "Linear modules left, the untied head included")
