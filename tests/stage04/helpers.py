"""Stage 04 helpers shared by the visible suites and the hidden one (a helper exists once)."""
from __future__ import annotations

import numpy as np


def grad_or_zeros(tensor) -> np.ndarray:
    """tensor.grad, or zeros when no gradient reached it: a missing gradient then shows up as zeros in the diff."""
    return np.zeros(tensor.shape) if tensor.grad is None else tensor.grad
