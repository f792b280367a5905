"""Stage 05: optimizers.

Gradient descent and its descendants turn the gradients that backward() leaves in `p.grad` into an update of `p.data`:
SGD (with momentum, Nesterov momentum and L2 weight decay), Adam (L2 weight decay added to the gradient) and AdamW
(weight decay decoupled from the gradient). Beside them: gradient clipping by the global norm, a warmup-then-cosine
learning-rate schedule, and state_dict / load_state_dict so that a run stopped and resumed follows exactly the same
trajectory as a run that never stopped.

Conventions (the tests rely on them; docs/05-optim.md derives them):
  - A parameter is a Tensor with `.data` and `.grad` (NumPy arrays). A parameter whose `.grad` is None is skipped:
    no update, no change to its state, its step count stays.
  - Updates happen in place: `p.data` stays the same array object (anything else holding it sees the new values), and
    the optimizer's state arrays are allocated once, in the parameter's dtype, and updated in place.
  - The update equations are torch.optim's: SGD's momentum buffer is b = momentum * b + g (no dampening); Adam adds
    eps after the square root of the bias-corrected second moment; SGD and Adam add weight_decay * p to the gradient;
    AdamW multiplies p by (1 - lr * weight_decay) instead.
  - Scalars inside step() are Python floats: a NumPy float64 scalar would promote float32 arithmetic to float64.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .tensor import Tensor


class Optimizer:
    """What every optimizer shares: the parameters, a settable learning rate, zero_grad, and saving/restoring state."""

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        """Keep the parameters (as a list, in the given order), the learning rate, and empty per-parameter state.

        self.state  name -> one array per parameter, same shape and dtype as that parameter (state["exp_avg"][i]
                    belongs to self.params[i]); each optimizer fills it in its own __init__.
        self.steps  self.steps[i] = how many updates self.params[i] has received (a Python int). Adam's bias
                    correction needs it per parameter: one whose grad was None for a while has had fewer updates.

        ValueError for an empty parameter list (an exhausted generator, say), for the same Tensor twice (it would be
        updated twice per step), and for lr < 0.
        """
        self.params = list(params)
        if not self.params:
            raise ValueError("the optimizer got an empty parameter list (was model.parameters() consumed already?)")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("the same parameter appears twice in the list; it would be updated twice per step")
        if not lr >= 0.0:  # `not >=` also rejects NaN
            raise ValueError(f"the learning rate must be >= 0, got {lr}")
        self.lr = float(lr)
        self.state: dict[str, list[np.ndarray]] = {}
        self.steps: list[int] = [0] * len(self.params)

    def zero_grad(self) -> None:
        """Forget every parameter's gradient: set `p.grad = None` (as torch does by default).

        backward() accumulates into `.grad`, so it must be cleared before each new backward pass; None rather than
        zeros costs no memory and makes a parameter that took no part in the loss visibly gradient-less, and step()
        skips it instead of decaying it.
        """
        ### BEGIN SOLUTION
        for p in self.params:
            p.grad = None
        ### END SOLUTION

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of everything step() depends on besides the parameters themselves and the constructor's arguments.

        A flat dict of arrays (so np.savez can store it without pickle):
            "lr"            0-d float64 array: the current learning rate
            "steps"         int64 array (number of parameters,): self.steps
            "<name>.<i>"    a copy of self.state[name][i], in the parameter's dtype: "momentum_buffer.0", "exp_avg.3",
                            "exp_avg_sq.3", ... (SGD without momentum has none)

        Every array is a copy: stepping on afterwards, or changing the returned arrays, changes neither the other.
        """
        ### BEGIN SOLUTION
        state = {"lr": np.array(self.lr, dtype=np.float64), "steps": np.array(self.steps, dtype=np.int64)}
        for name, arrays in self.state.items():
            for i, array in enumerate(arrays):
                state[f"{name}.{i}"] = array.copy()
        return state
        ### END SOLUTION

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what state_dict() returned, from an optimizer made the same way (same kind, same parameter shapes).

        The keys must be exactly this optimizer's: otherwise KeyError naming the missing and the unexpected keys. An
        array of the wrong shape: ValueError naming the key and both shapes. Everything is checked before anything
        changes. The values are copied into the existing state arrays (in place, cast to their dtype), so changing
        `state` afterwards has no effect on the optimizer; self.steps and self.lr are set from "steps" and "lr".
        """
        ### BEGIN SOLUTION
        slots = {f"{name}.{i}": array for name, arrays in self.state.items() for i, array in enumerate(arrays)}
        shapes = {"lr": (), "steps": (len(self.params),), **{key: array.shape for key, array in slots.items()}}
        missing, unexpected = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
        if missing or unexpected:
            raise KeyError(f"optimizer state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for key, shape in shapes.items():
            if np.shape(state[key]) != shape:
                raise ValueError(f"optimizer state_dict[{key!r}]: expected shape {shape}, got {np.shape(state[key])}")
        for key, array in slots.items():
            np.copyto(array, state[key])  # in place: the arrays stay the ones step() updates
        self.steps = [int(count) for count in state["steps"]]
        self.lr = float(state["lr"])
        ### END SOLUTION


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum (heavy ball or Nesterov) and L2 weight decay.

    For each parameter p whose gradient g = p.grad is not None (torch.optim.SGD's equations, dampening 0):

        g <- g + weight_decay * p               L2 weight decay, added to the gradient (p.grad itself is not changed)
        b <- momentum * b + g                   the momentum buffer, state["momentum_buffer"]; it starts at 0, so the
                                                first b is g
        d =  g + momentum * b   if nesterov     look ahead along the buffer
             b                  otherwise       (momentum = 0: d = g, and there is no buffer)
        p <- p - lr * d
    """

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        """Check the hyperparameters, call `super().__init__(params, lr)`, keep momentum/nesterov/weight_decay, and
        when momentum > 0 allocate self.state["momentum_buffer"]: zeros like each p.data (same shape and dtype).

        ValueError for momentum < 0, weight_decay < 0, or nesterov with momentum = 0 (Nesterov needs a buffer).
        """
        ### BEGIN SOLUTION
        if not momentum >= 0.0:
            raise ValueError(f"momentum must be >= 0, got {momentum}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if nesterov and momentum == 0.0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        super().__init__(params, lr)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        if self.momentum > 0.0:
            self.state["momentum_buffer"] = [np.zeros_like(p.data) for p in self.params]
        ### END SOLUTION

    def step(self) -> None:
        """One update of every parameter that has a gradient, in place (the equations are in the class docstring);
        then self.steps[i] += 1 for each parameter updated. Reads self.lr at each call (a schedule may change it)."""
        ### BEGIN SOLUTION
        lr, momentum, weight_decay = float(self.lr), self.momentum, self.weight_decay
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if weight_decay != 0.0:
                g = g + weight_decay * p.data  # a new array: p.grad must stay the loss's gradient
            if momentum != 0.0:
                buffer = self.state["momentum_buffer"][i]
                buffer *= momentum
                buffer += g
                g = g + momentum * buffer if self.nesterov else buffer
            p.data -= lr * g
            self.steps[i] += 1
        ### END SOLUTION


### BEGIN SOLUTION
def _adam_update(p: Tensor, g: np.ndarray, m: np.ndarray, v: np.ndarray, t: int, lr: float, beta1: float,
                 beta2: float, eps: float, scratch: np.ndarray) -> None:
    """Adam's moment updates and parameter update for one parameter at its step t >= 1, all in place.

    scratch: an array like p that this step may overwrite: every intermediate goes there, so a step allocates nothing
    (a fresh temporary per parameter per step costs more than its arithmetic at these sizes: page faults)."""
    np.multiply(g, 1.0 - beta1, out=scratch)
    m *= beta1
    m += scratch  # m = beta1 m + (1 - beta1) g
    np.multiply(g, g, out=scratch)
    scratch *= 1.0 - beta2
    v *= beta2
    v += scratch  # v = beta2 v + (1 - beta2) g²
    # lr * m_hat / (sqrt(v_hat) + eps) with the bias corrections folded into scalars, as torch does:
    # m_hat = m / (1 - beta1^t) and sqrt(v_hat) = sqrt(v) / sqrt(1 - beta2^t)
    np.sqrt(v, out=scratch)
    scratch /= math.sqrt(1.0 - beta2 ** t)
    scratch += eps
    np.divide(m, scratch, out=scratch)
    scratch *= lr / (1.0 - beta1 ** t)
    p.data -= scratch


def _scratch(params: list[Tensor]) -> dict[np.dtype, np.ndarray]:
    """Working memory for one step: per dtype, one flat array as long as the largest parameter of that dtype, whose
    first p.size elements each parameter's update uses in turn. Made per step, so the optimizer holds nothing beyond
    its state between steps."""
    sizes: dict[np.dtype, int] = {}
    for p in params:
        sizes[p.dtype] = max(sizes.get(p.dtype, 0), p.size)
    return {dtype: np.empty(size, dtype=dtype) for dtype, size in sizes.items()}
### END SOLUTION


class Adam(Optimizer):
    """Adam: momentum on the gradient, divided by a running root-mean-square of the gradient; L2 weight decay.

    For each parameter p whose gradient g = p.grad is not None, with t = its step count including this update
    (t = 1 on its first update; torch.optim.Adam's equations):

        g <- g + weight_decay * p               L2, added to the gradient (p.grad itself is not changed)
        m <- beta1 * m + (1 - beta1) * g        first moment, state["exp_avg"], starts at 0
        v <- beta2 * v + (1 - beta2) * g^2      second moment, state["exp_avg_sq"], starts at 0
        m_hat = m / (1 - beta1^t)               bias correction: undoes the pull towards the zero start
        v_hat = v / (1 - beta2^t)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)      eps added after the square root

    At t = 1, m_hat = g and v_hat = g^2 exactly, so the first update is lr * g / (|g| + eps), about lr * sign(g).
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        """Check the hyperparameters, call `super().__init__(params, lr)`, keep beta1, beta2, eps, weight_decay, and
        allocate self.state["exp_avg"] and self.state["exp_avg_sq"]: zeros like each p.data (same shape and dtype).

        ValueError unless 0 <= beta1 < 1 and 0 <= beta2 < 1 (beta = 1 would divide by 1 - 1^t = 0), eps >= 0 and
        weight_decay >= 0.
        """
        ### BEGIN SOLUTION
        beta1, beta2 = betas
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {beta}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, lr)
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.state["exp_avg"] = [np.zeros_like(p.data) for p in self.params]
        self.state["exp_avg_sq"] = [np.zeros_like(p.data) for p in self.params]
        ### END SOLUTION

    def step(self) -> None:
        """One update of every parameter that has a gradient, in place (the equations are in the class docstring):
        self.steps[i] += 1 first, and t = self.steps[i]. Reads self.lr at each call (a schedule may change it).

        m and v are updated in place (m *= beta1; m += (1 - beta1) * g): the trainer calls step() thousands of times,
        and `m = beta1 * m + ...` would allocate new arrays at every call and leave self.state's arrays behind.
        """
        ### BEGIN SOLUTION
        lr, scratch = float(self.lr), _scratch(self.params)
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay != 0.0:
                g = g + self.weight_decay * p.data  # a new array: p.grad must stay the loss's gradient
            self.steps[i] += 1
            _adam_update(p, g, self.state["exp_avg"][i], self.state["exp_avg_sq"][i], self.steps[i], lr,
                         self.beta1, self.beta2, self.eps, scratch[p.dtype][:p.size].reshape(p.shape))
        ### END SOLUTION


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): the decay shrinks p directly, not through m and v.

    For each parameter p whose gradient g = p.grad is not None (torch.optim.AdamW's equations):

        p <- p - lr * weight_decay * p          computed as p *= (1 - lr * weight_decay), before the Adam update
        then Adam's update with g as it is (no L2 term): m, v, bias correction, p -= lr * m_hat / (sqrt(v_hat) + eps)

    With L2 (Adam's weight_decay) the decay term is divided by sqrt(v_hat) like the rest of the gradient, so weights
    with large gradients are barely decayed; decoupled, every weight shrinks by the same factor (1 - lr * wd).
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01) -> None:
        """Adam's hyperparameters, checks and state; only the default weight decay differs (0.01, as in torch)."""
        super().__init__(params, lr, betas, eps, weight_decay)

    def step(self) -> None:
        """One update of every parameter that has a gradient, in place (the equations are in the class docstring):
        self.steps[i] += 1 first, and t = self.steps[i]. Reads self.lr at each call (a schedule may change it)."""
        # Adam.step and AdamW.step share the moment and parameter updates: a small private helper of your own
        # (a module-level function) keeps them in one place.
        ### BEGIN SOLUTION
        lr, scratch = float(self.lr), _scratch(self.params)
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            p.data *= 1.0 - lr * self.weight_decay  # decoupled: m and v never see the decay
            self.steps[i] += 1
            _adam_update(p, p.grad, self.state["exp_avg"][i], self.state["exp_avg_sq"][i], self.steps[i], lr,
                         self.beta1, self.beta2, self.eps, scratch[p.dtype][:p.size].reshape(p.shape))
        ### END SOLUTION


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> float:
    """Scale all gradients together so that their global L2 norm is at most max_norm; return the norm before.

        total = sqrt(sum over parameters p with a gradient of sum_i p.grad[i]^2)

    ONE norm over all the parameters (a parameter whose grad is None is skipped), not one per parameter, so clipping
    shortens the whole update without turning it. If total > max_norm every gradient is multiplied in place by
    max_norm / total, after which the global norm is max_norm; otherwise nothing changes. (torch's clip_grad_norm_
    divides by total + 1e-6 and lands just under max_norm; here it is exactly max_norm.) The squares are summed in
    float64. A non-finite total (an inf or NaN somewhere) is returned as it is and the gradients are left alone:
    scaling cannot repair them, and the caller should skip that step.

    Returns total as a Python float. ValueError for max_norm < 0.
    """
    ### BEGIN SOLUTION
    if not max_norm >= 0.0:
        raise ValueError(f"max_norm must be >= 0, got {max_norm}")
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float(np.sum(np.square(g), dtype=np.float64)) for g in grads))
    if math.isfinite(total) and total > max_norm:
        scale = max_norm / total
        for g in grads:
            g *= scale  # in place: p.grad is this very array
    return total
    ### END SOLUTION


def cosine_schedule(step: int, *, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """The learning rate for `step` (0-indexed: the value to set before the step-th call of optimizer.step()).

        warmup   step < warmup_steps:                 max_lr * (step + 1) / warmup_steps
        cosine   warmup_steps <= step < total_steps:  min_lr + (max_lr - min_lr) * (1 + cos(pi * progress)) / 2,
                                                      progress = (step - warmup_steps) / (total_steps - warmup_steps)
        after    step >= total_steps:                 min_lr

    So step 0 gets max_lr / warmup_steps (never 0: a step with lr 0 is wasted), steps warmup_steps - 1 and
    warmup_steps both get max_lr, the midpoint step (warmup_steps + total_steps) / 2 gets (max_lr + min_lr) / 2, and
    every step from total_steps on gets min_lr. warmup_steps = 0 means no warmup (step 0 gets max_lr).

    Returns a Python float. ValueError for step < 0, warmup_steps < 0 or total_steps < warmup_steps.
    """
    ### BEGIN SOLUTION
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps < 0 or total_steps < warmup_steps:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps, got warmup_steps={warmup_steps}, "
                         f"total_steps={total_steps}")
    if step < warmup_steps:
        return float(max_lr * (step + 1) / warmup_steps)
    if step >= total_steps:
        return float(min_lr)
    progress = (step - warmup_steps) / (total_steps - warmup_steps)  # in [0, 1)
    return float(min_lr + (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress)) / 2.0)
    ### END SOLUTION
