"""Stage 05 (optimizers): the same runs as torch.optim, step for step (only where PyTorch is installed).

A peer comparison, part of the self-test but not of any stage's graded suite (tests/peers/ is not a stage folder), so
a grade never depends on whether torch is installed. Without torch this module is skipped at collection.
With torch, SGD, Adam and AdamW run for 20 steps on the same least-squares problem, in float64, with the same
hyperparameters and the same learning rate at every step (warmup then cosine), and must follow torch's trajectory and
end with torch's state (momentum buffers, first and second moments, step counts).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, Tol, assert_close
from tests.stage05.test_optim import least_squares_gradient, probe_trajectory, resume_inputs

torch = pytest.importorskip("torch")

STAGE = "05"  # the stage whose module the `target` fixture hands to the probes (see tests/conftest.py)

# torch computes Adam's first moment with lerp and may fuse multiply-adds; over 20 steps the rounding differences stay
# at the level of the last few bits of float64.
TORCH = Tol(1e-10, 1e-13, "float64; torch rounds differently (lerp, fused multiply-add), 20 steps")

LRS = [0.05 * (k + 1) / 4 if k < 4 else 0.005 + 0.045 * (1 + math.cos(math.pi * (k - 4) / 16)) / 2 for k in range(20)]

SPECS = {
    "SGD": [{"kind": "SGD", "lr": 0.05},
            {"kind": "SGD", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.1},
            {"kind": "SGD", "lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01}],
    "Adam": [{"kind": "Adam", "lr": 0.05},
             {"kind": "Adam", "lr": 0.05, "betas": [0.8, 0.95], "eps": 1e-6, "weight_decay": 0.1}],
    "AdamW": [{"kind": "AdamW", "lr": 0.05},
              {"kind": "AdamW", "lr": 0.05, "betas": [0.85, 0.9], "eps": 1e-7, "weight_decay": 0.2}],
}
TORCH_STATE = {"momentum_buffer": "momentum_buffer", "exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}


def torch_run(spec: dict, params: list, a: np.ndarray, b: np.ndarray, lrs: list) -> dict:
    """The same run with torch.optim (torch's own defaults for anything the spec leaves out)."""
    ps = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
    kwargs = {k: (tuple(v) if k == "betas" else v) for k, v in spec.items() if k != "kind"}
    opt = getattr(torch.optim, spec["kind"])(ps, foreach=False, **kwargs)
    trajectory = []
    for lr in lrs:
        for p, g in zip(ps, least_squares_gradient([p.detach().numpy() for p in ps], a, b)):
            p.grad = torch.from_numpy(np.ascontiguousarray(g))
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        trajectory.append([p.detach().numpy().copy() for p in ps])
    state = {"lr": np.array(lrs[-1]), "steps": np.array([len(lrs)] * len(ps), dtype=np.int64)}
    for i, p in enumerate(ps):
        for ours, theirs in TORCH_STATE.items():
            if opt.state[p].get(theirs) is not None:
                state[f"{ours}.{i}"] = opt.state[p][theirs].numpy().copy()
    return {"trajectory": trajectory, "state": state}


@pytest.mark.concept("torch")
@pytest.mark.parametrize("kind", list(SPECS))
def test_twenty_steps_match_torch_optim(target, kind):
    # torch is the reference here (so nothing of this file is in the stored expected outputs, which must not depend
    # on whether torch was installed when they were recorded)
    inputs = resume_inputs(505)
    for spec in SPECS[kind]:
        got = target.run(probe_trajectory, spec=spec, lrs=LRS, **inputs)
        want = torch_run(spec, lrs=LRS, **inputs)
        assert_close(sorted(got["state"]), sorted(want["state"]), EXACT, f"{spec}: state_dict keys vs torch's state")
        assert_close(got["trajectory"], want["trajectory"], TORCH, f"{spec}: parameters after each step vs torch.optim")
        assert_close(got["state"], want["state"], TORCH, f"{spec}: final state vs torch.optim's")
