"""Stage 05 helpers shared by the visible suite, the hidden one and tests/peers (a helper exists once): parameters
made with the target's own tensor module, optimizers from a spec, the probes both suites run, and the updates written
out by hand."""
from __future__ import annotations

import numpy as np

from grader.harness import Mistake, seeded, sibling


def tensors(m, arrays: list, dtype=np.float64) -> list:
    """Leaf Tensors made with the target's own tensor module, holding copies of `arrays`."""
    tensor = sibling(m, "tensor")
    return [tensor.Tensor(np.array(a, dtype=dtype), requires_grad=True, dtype=dtype) for a in arrays]


def optimizer(m, params: list, spec: dict):
    """spec = {"kind": "SGD" | "Adam" | "AdamW", **hyperparameters}; betas may come as a list."""
    kwargs = {k: (tuple(v) if k == "betas" else v) for k, v in spec.items() if k != "kind"}
    return getattr(m, spec["kind"])(params, **kwargs)


def set_grads(params: list, grads: list, dtype=np.float64) -> None:
    for p, g in zip(params, grads):
        p.grad = None if g is None else np.array(g, dtype=dtype)


def probe_steps(m, spec: dict, params: list, grads: list, lrs: list | None = None) -> dict:
    """Step with the given gradients (grads[k][i] for parameter i at step k; None = no gradient), optionally setting
    `optimizer.lr = lrs[k]` before step k. Returns the parameters after each step and what step() must not change."""
    ps = tensors(m, params)
    arrays = [p.data for p in ps]
    opt = optimizer(m, ps, spec)
    trajectory, grads_after = [], []
    for k, step_grads in enumerate(grads):
        set_grads(ps, step_grads)
        if lrs is not None:
            opt.lr = lrs[k]
        opt.step()
        trajectory.append([p.data.copy() for p in ps])
        grads_after.append([None if p.grad is None else p.grad.copy() for p in ps])
    return {"trajectory": trajectory, "grads_after": grads_after,
            "same_arrays": all(p.data is a for p, a in zip(ps, arrays)), "steps": [int(s) for s in opt.steps]}


def least_squares_gradient(params: list, a: np.ndarray, b: np.ndarray) -> list:
    """Gradients of 0.5 * |a @ w + c - b|^2 for params = [w (n, k), c (k,)]: a problem whose gradients depend on the
    parameters, so a resumed run only matches if the parameters AND the optimizer state were restored exactly."""
    w, c = params
    residual = a @ w + c - b  # (N, k)
    return [a.T @ residual, residual.sum(axis=0)]


def not_in_place(got: dict, want: dict) -> bool:
    return got["same_arrays"] is False



NOT_IN_PLACE = Mistake("p.data was replaced by a new array (p.data = p.data - ...); update it in place "
                       "(p.data -= ...) so that everything holding the array sees the new values", not_in_place)


def adam_by_hand(p: np.ndarray, grads: list, lrs: list, beta1: float, beta2: float, eps: float, weight_decay: float,
                 decoupled: bool) -> list:
    """The class docstrings' equations, written out for one parameter (lrs[k] at step k); the trajectory."""
    m, v, out = np.zeros_like(p), np.zeros_like(p), []
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        g = np.array(g)
        if decoupled:
            p = p - lr * weight_decay * p
        else:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append([p])
    return out


def probe_clip(m, grads: list, max_norm: float) -> dict:
    """clip_grad_norm on parameters with the given gradients (None = no gradient)."""
    ps = tensors(m, [np.zeros_like(np.asarray(g, dtype=np.float64)) if g is not None else np.zeros(2)
                     for g in grads])
    set_grads(ps, grads)
    arrays = [p.grad for p in ps]
    total = m.clip_grad_norm(ps, max_norm)
    return {"norm": total, "type": type(total).__name__, "grads": [None if p.grad is None else p.grad.copy()
                                                                   for p in ps],
            "same_arrays": all(p.grad is a for p, a in zip(ps, arrays))}


def probe_schedule(m, steps: list, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> dict:
    values = [m.cosine_schedule(s, max_lr=max_lr, min_lr=min_lr, warmup_steps=warmup_steps, total_steps=total_steps)
              for s in steps]
    return {"values": values, "types": sorted({type(v).__name__ for v in values})}


def resume_inputs(seed: int, dtype=np.float64) -> dict:
    rng = seeded(seed)
    a, b = rng.normal(size=(8, 3)).astype(dtype), rng.normal(size=(8, 2)).astype(dtype)
    return {"params": [rng.normal(size=(3, 2)).astype(dtype), rng.normal(size=2).astype(dtype)], "a": a, "b": b}
