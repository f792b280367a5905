"""Stage 12 (where the time and memory go), visible suite: the conventions of the docstrings that the other tests'
inputs do not expose (a mistake there would pass them and fail the hidden suite). Each test's input is chosen so that
one plausible mistake gives a different answer; tests/mutants/stage12.toml lists those mistakes.
"""
from __future__ import annotations

import time

import pytest

from grader.harness import EXACT, F64, Mistake, assert_close

TICK = 0.5  # seconds the fake clock advances per reading: every timed product or copy then "takes" 0.5 s


def probe_rates_with_a_fake_clock(m, sizes: list, megabytes: float, seed: int, repeats: int) -> dict:
    """measure_matmul and measure_bandwidth while time.perf_counter ticks TICK seconds per call, so each timing is
    exactly TICK and the rates are the docstrings' formulas over TICK."""
    clock, real = [0.0], time.perf_counter

    def fake() -> float:
        clock[0] += TICK
        return clock[0]

    time.perf_counter = fake
    try:
        rates = m.measure_matmul(sizes, seed=seed, repeats=repeats)
        bandwidth = m.measure_bandwidth(megabytes, seed=seed, repeats=repeats)
    finally:
        time.perf_counter = real
    return {"matmul": [float(rate) for rate in rates], "bandwidth": float(bandwidth)}


@pytest.mark.concept("measure")
def test_rates_are_flops_and_bytes_over_the_best_time(check):
    # With every timing 0.5 s: (n, n) @ (n, n) is 2·n³ FLOPs, so 2·n³ / 0.5 / 1e9 GFLOP/s; a copy of 1 MiB reads and
    # writes it, 2 · 2^20 bytes / 0.5 / 1e9 GB/s.
    sizes = [8, 16]
    mistakes = (Mistake("a product of two (n, n) matrices is 2·n³ FLOPs (n³ multiplies and n³ adds)",
                        lambda got, want: abs(got["matmul"][0] * 2 - want["matmul"][0]) < 1e-12),
                Mistake("a copy moves every byte twice (read and write): 2·nbytes",
                        lambda got, want: abs(got["bandwidth"] * 2 - want["bandwidth"]) < 1e-12))
    got = check(probe_rates_with_a_fake_clock, sizes=sizes, megabytes=1.0, seed=1251, repeats=2, tol=F64,
                what="rates timed by a clock that ticks 0.5 s per reading", mistakes=mistakes)
    assert_close(got, {"matmul": [2 * n**3 / TICK / 1e9 for n in sizes], "bandwidth": 2 * 2**20 / TICK / 1e9}, F64,
                 "GFLOP/s = 2·n³ / best time / 1e9 and GB/s = 2·nbytes / best time / 1e9", mistakes=mistakes)
    assert_close(len(got["matmul"]), 2, EXACT, "one rate per size")
