"""The one weighting rule every channel uses (`grader grade`, Gradescope, nbgrader, `python -m grader`).

Each test of a suite is worth an equal share of the suite's points (the manifest's visible or hidden points), counted
in hundredths of a point so that shares add up to the suite's points exactly: the hundredths that do not divide
evenly go one each to the first tests in the order of their pytest ids. A suite's score is the sum of the shares of
its passed tests; a notebook's test cell is worth the shares of its tests, and scores the shares of those it passes.
"""
from __future__ import annotations

from typing import Iterable


def cents(nodeids: Iterable[str], points: float) -> dict[str, int]:
    """Each test id's share of `points`, in hundredths of a point; the shares add up to `points` exactly."""
    ordered = sorted(set(nodeids))
    if not ordered:
        return {}
    base, extra = divmod(round(points * 100), len(ordered))
    return {nodeid: base + (i < extra) for i, nodeid in enumerate(ordered)}


def shares(nodeids: Iterable[str], points: float) -> dict[str, float]:
    """Each test id's share of `points`, in points (a multiple of 0.01)."""
    return {nodeid: c / 100 for nodeid, c in cents(nodeids, points).items()}


def score(nodeids: Iterable[str], passed: Iterable[str], points: float) -> float:
    """The points the passed tests of a suite earn: the sum of their shares, to the hundredth."""
    share = cents(nodeids, points)
    return sum(share.get(n, 0) for n in set(passed)) / 100
