"""Stage 12 (where the time and memory go), visible suite: the roofline.

The intensity formulas are checked against values worked out by hand and the reference's; the measurements are
checked only for what they return (sizes in, one positive rate per size out), never for speed: the machine is not
the learner's to grade, and docs/12-systems.md quotes what it measured here.
"""
from __future__ import annotations

import math

import pytest

from grader.harness import EXACT, F64, Mistake, assert_close, assert_true


def probe_intensities(m, matmuls: list, attentions: list, rooflines: list) -> dict:
    return {"matmul": [m.matmul_intensity(*shape) for shape in matmuls],
            "attention": [m.attention_intensity(T, S, Dh, itemsize, tiled=bool(tiled))
                          for T, S, Dh, itemsize, tiled in attentions],
            "roofline": [m.roofline(*point) for point in rooflines]}


@pytest.mark.concept("roofline")
def test_intensities_worked_out_by_hand(check):
    # matmul 1024³, float32: 2·2^30 FLOPs over 4·3·2^20 bytes = 512/3 ≈ 170.7. (768, 128) @ (128, 344): 67,633,152
    # FLOPs over 4·(98,304 + 44,032 + 264,192) = 1,626,112 bytes. A (1, 4096) @ (4096, 1) dot product, float64:
    # 8192 FLOPs over 8·(4096 + 4096 + 1) bytes, about 1/8: memory-bound whatever the machine.
    # Attention T = S = 64, Dh = 32: 4·64·64·32 = 524,288 FLOPs; tiled it moves 4·(4·64·32) = 32,768 bytes: 16;
    # untiled also the four passes over the (64, 64) matrix, 4·4·4096 = 65,536 more: 524,288 / 98,304 = 16/3.
    # The roofline at 205 GFLOP/s and 20 GB/s: intensity 2 reaches 40; intensity 100 is past the ridge (10.25): 205.
    got = check(probe_intensities, tol=F64, what="intensities",
                matmuls=[[1024, 1024, 1024], [768, 128, 344], [1, 4096, 1, 8]],
                attentions=[[64, 64, 32, 4, 1], [64, 64, 32, 4, 0]],
                rooflines=[[2.0, 205.0, 20.0], [100.0, 205.0, 20.0]])
    assert_close(got, {"matmul": [512 / 3, 67_633_152 / 1_626_112, 8192 / (8 * 8193)],
                       "attention": [16.0, 16 / 3], "roofline": [40.0, 205.0]}, F64,
                 "intensities and the roofline, worked out by hand in the test's comment", mistakes=(
                     Mistake("the bytes were counted in elements: multiply by itemsize",
                             lambda got, want: math.isclose(got["matmul"][0], 4 * want["matmul"][0])),
                     Mistake("a multiply-add counted as one FLOP: a product costs 2·n·k·m",
                             lambda got, want: math.isclose(got["matmul"][0], want["matmul"][0] / 2)),
                     Mistake("the untiled op must also move the (T, S) scores and probabilities: write and read each "
                             "(4·T·S elements)", lambda got, want: math.isclose(got["attention"][1], 16.0))))


@pytest.mark.concept("roofline")
def test_tiling_raises_attentions_intensity_with_length(check):
    # Untiled, the 4·T·S bytes grow as fast as the FLOPs: the intensity stays below Dh/itemsize = 8 however long the
    # sequence. Tiled (T = S), 4·T²·Dh FLOPs over itemsize·4·T·Dh bytes = T / itemsize: it grows with the length.
    lengths = [64, 256, 1024, 4096]
    got = check(probe_intensities, tol=F64, what="attention intensities", matmuls=[], rooflines=[],
                attentions=[[T, T, 32, 4, tiled] for tiled in (0, 1) for T in lengths])
    untiled, tiled = got["attention"][:4], got["attention"][4:]
    assert_true(all(value < 8.0 for value in untiled) and untiled == sorted(untiled),
                f"untiled attention's intensity must rise towards Dh / itemsize = 8 and stay below it: {untiled}")
    assert_close(tiled, [T / 4 for T in lengths], F64, "tiled attention's intensity, 4·T²·Dh / (4·4·T·Dh) = T / 4")


def probe_measurements(m, sizes: list, megabytes: float, seed: int) -> dict:
    rates = m.measure_matmul(sizes, seed=seed, repeats=1)
    bandwidth = m.measure_bandwidth(megabytes, seed=seed, repeats=1)
    return {"rates": [float(rate) for rate in rates], "count": len(rates), "bandwidth": float(bandwidth)}


@pytest.mark.concept("measure")
def test_measurements_return_one_positive_rate_per_size(target):
    got = target.run(probe_measurements, sizes=[8, 32, 64], megabytes=1.0, seed=1240)
    assert_close(got["count"], 3, EXACT, "measure_matmul returns one rate per size")
    assert_true(all(math.isfinite(rate) and rate > 0 for rate in got["rates"] + [got["bandwidth"]]),
                f"rates must be positive and finite (GFLOP/s, GB/s), got {got}: time with time.perf_counter, keep "
                "the best of the repeats, and count 2·n³ FLOPs per product and 2·nbytes per copy")
