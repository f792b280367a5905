"""Stage 12: where the time and memory go (your turn: replace every NotImplementedError).

A GPT that trains is not yet a GPT that trains well on a real machine. This stage measures where the bytes and the
FLOPs of a training step go, predicts them from the config, and then removes the three biggest costs: the (T, T)
attention matrix (flash attention: tiles and an online softmax), the activations kept for backward (checkpointing:
keep a block's input, recompute the rest), and half the bytes of every array (mixed precision: float16 compute copies,
float32 master weights, a dynamic loss scale). docs/12-systems.md derives every formula.

Conventions (the tests rely on them):
  - Counts are exact integers. A FLOP is one multiply or one add: a (n, k) @ (k, m) product costs 2·n·k·m, its
    backward twice that (one product for each input's gradient). Only matrix products are counted.
  - Bytes are array.nbytes. An array and its views are one buffer, counted once; parameters are not activations.
  - Activations: the arrays the graph's backward closures keep after a forward, for a model called with
    (ids, targets) as int64 (B, T) arrays; the formula counts the terms that grow with B·T·width, B·H·T² or B·T·V.
  - Flash attention follows stage 06's conventions: q (B, H, T, Dh), k and v (B, Hkv, S, Dh), query head h reads
    key/value head h // (H // Hkv), causal query i sits at S - T + i; `tile` rows and columns per block, the last
    block shorter when `tile` does not divide T or S.
  - Every measurement takes its sizes and a seed; nothing here asserts a speed.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Sequence

import numpy as np

from . import attention
from .gpt import GPTConfig
from .nn import Module, cross_entropy
from .tensor import Tensor, no_grad, op


def feed_forward_hidden(config: GPTConfig) -> int:
    """The feed-forward's hidden size F: 8 · ceil(C / 3) for "swiglu", 4 · C for "gelu" (stage 07's rule)."""
    return 8 * math.ceil(config.width / 3) if config.feed_forward == "swiglu" else 4 * config.width


# ---------------------------------------------------------------------- accounting: predicted


def parameter_count(config: GPTConfig) -> int:
    """The number of parameters of GPT(config), from the config alone (equal to GPT(config).num_parameters()).

    With C = width, V = vocab_size, Dh = C / heads, Hkv = kv_heads or heads and F = feed_forward_hidden(config):
    per block: query and output C·C each, key and value C·Hkv·Dh each (no biases); swiglu 3·C·F (no biases) or
    gelu 2·C·F + F + C (up and down with biases); two norms of C weights ("rms") or C weights + C biases ("layer").
    Besides the blocks: the token table V·C, the learned position table context·C, the final norm, an untied head C·V.
    """
    raise NotImplementedError("stage 12 (where the time and memory go): parameter_count")


def step_flops(config: GPTConfig, batch: int, length: int | None = None) -> dict[str, int]:
    """FLOPs of the matrix products of one training step on `batch` sequences of `length` tokens (default context).

    {"forward": 2·M·B·T + 4·L·B·T²·C, "backward": twice the forward}, where M is the number of weights that
    multiply (every block matrix, and the head: the token table when tied, the head when not; no norm weights, biases
    or lookup tables) and 4·B·T²·C per layer is attention's q kᵀ and P v (dense: the causal mask saves nothing).
    """
    raise NotImplementedError("stage 12 (where the time and memory go): step_flops")


def activation_bytes(config: GPTConfig, batch: int, length: int | None = None, itemsize: int = 4,
                     checkpointed: bool = False) -> int:
    """Bytes the backward closures keep after model(ids, targets): the leading terms, as the fused ops keep them.

    Per layer, in elements (C = width, H heads, Hkv·Dh = key/value width, F = feed_forward_hidden):
        6·B·T·C         the two norms' x̂ and outputs, the rotated queries, the merged heads read by the output matmul
        2·B·T·Hkv·Dh    keys and values                     B·H·T²  attention's probabilities P
        5·B·T·F         swiglu (gate, silu's σ, silu, up, their product); gelu: 3·B·T·F (input, tanh, output)
        2·B·T·C         dropout's two masks, only when dropout > 0
    checkpointed: a layer keeps only its input, B·T·C. Besides the layers: 2·B·T·C (final norm), 2·B·T·V
    (cross-entropy's logits and log-probabilities) and, with dropout, B·T·C (the embeddings' mask).
    Left out (docs/12-systems.md, section 3): the norms' (B, T, 1) statistics, rotary's cos/sin, int64 indices.
    """
    raise NotImplementedError("stage 12 (where the time and memory go): activation_bytes")


def training_memory(config: GPTConfig, batch: int, length: int | None = None, itemsize: int = 4) -> dict[str, int]:
    """The bytes of one AdamW training step: {"parameters", "gradients", "optimizer", "activations"}.

    N = parameter_count(config) numbers each for parameters and gradients, 2·N for AdamW's two moments (exp_avg and
    exp_avg_sq, in the parameters' dtype), all times itemsize; activations from activation_bytes.
    """
    raise NotImplementedError("stage 12 (where the time and memory go): training_memory")


# ---------------------------------------------------------------------- accounting: measured

def saved_bytes(output: Tensor) -> int:
    """Bytes of the arrays that the backward closures of `output`'s graph keep: the activations, measured.

    Walk the graph from `output` through `_parents` (iteratively: graphs are thousands of nodes deep). For every node
    with a `_backward`, look into its closure cells (`_backward.__closure__`, each `cell.cell_contents`): an ndarray,
    a Tensor (its `.data`), a tuple/list of those, or a function, whose closure holds them in turn (a wrapped
    backward, as FlopCounter makes). Count each memory buffer once, however many views and closures share it (follow
    `.base` to the array that owns the memory), and skip the leaves' arrays (parameters and constants are not
    activations). 0 for a graph-less tensor.
    """
    raise NotImplementedError("stage 12 (where the time and memory go): saved_bytes")


def matmul_flops(a_shape: Sequence[int], b_shape: Sequence[int]) -> int:
    """FLOPs of the forward product a @ b, (..., n, k) @ (..., k, m): 2·n·k·m for each of the broadcast batch's
    matrices (np.broadcast_shapes of the leading axes). E.g. (2, 3, 4) @ (4, 5): 2 · 2·3·4·5 = 240."""
    raise NotImplementedError("stage 12 (where the time and memory go): matmul_flops")


class FlopCounter:
    """Counts the FLOPs of matrix products, measured on the real model:

        with FlopCounter() as flops:
            loss = model(ids, targets)[1]
        loss.backward()
        flops.forward, flops.backward            # ints

    While active it replaces `Tensor.__matmul__` and `attention.scaled_dot_product_attention` (the module attribute
    MultiHeadAttention calls) by wrappers that call the originals and count: matmul_flops(a.shape, b.shape) for a
    product, the two products q kᵀ and P v (matmul_flops of (B, H, T, Dh) @ (B, H, Dh, S), then (B, H, T, S) @
    (B, H, S, Dh)) for attention. Each wrapper also wraps the new node's `_backward` to add twice its forward FLOPs
    when backward runs, inside the `with` or after it. __exit__ puts the originals back, also after an exception.
    """

    def __init__(self) -> None:
        self.forward = 0
        self.backward = 0

    def __enter__(self) -> FlopCounter:
        raise NotImplementedError("stage 12 (where the time and memory go): FlopCounter.__enter__")

    def __exit__(self, *error) -> None:
        raise NotImplementedError("stage 12 (where the time and memory go): FlopCounter.__exit__")


# ---------------------------------------------------------------------- the roofline


def measure_matmul(sizes: Sequence[int], seed: int = 0, repeats: int = 3) -> list[float]:
    """GFLOP/s of float32 (n, n) @ (n, n) for each n in sizes: 2·n³ / (best of `repeats` timings after one untimed
    warm-up) / 1e9, with both matrices drawn from np.random.default_rng(seed); a timing is the difference of two
    time.perf_counter() readings around one product. The best, not the mean: the machine can only make a product
    slower, never faster."""
    raise NotImplementedError("stage 12 (where the time and memory go): measure_matmul")


def measure_bandwidth(megabytes: float = 64, seed: int = 0, repeats: int = 3) -> float:
    """Memory bandwidth in GB/s: copy a float32 array of `megabytes` (2**20 bytes each, drawn from
    np.random.default_rng(seed)) into another with np.copyto; a copy reads and writes every byte, so
    2 · nbytes / best time / 1e9 (one untimed warm-up, then the best of `repeats`, each timed with two
    time.perf_counter() readings around one copy)."""
    raise NotImplementedError("stage 12 (where the time and memory go): measure_bandwidth")


def matmul_intensity(n: int, k: int, m: int, itemsize: int = 4) -> float:
    """FLOPs per byte of (n, k) @ (k, m) when each matrix crosses memory once:
    2·n·k·m / (itemsize·(n·k + k·m + n·m))."""
    raise NotImplementedError("stage 12 (where the time and memory go): matmul_intensity")


def attention_intensity(T: int, S: int, head_dim: int, itemsize: int = 4, tiled: bool = False) -> float:
    """FLOPs per byte of one head's attention forward: 4·T·S·Dh FLOPs (q kᵀ and P v) over the bytes moved.

    Tiled (flash): read q, k, v and write the output once: itemsize·(2·T·Dh + 2·S·Dh). Untiled: that plus the (T, S)
    scores written and read back by the softmax and the probabilities written and read back by P v: + itemsize·4·T·S.
    """
    raise NotImplementedError("stage 12 (where the time and memory go): attention_intensity")


def roofline(intensity: float, peak_flops: float, bandwidth: float) -> float:
    """The FLOP rate an op of this intensity can reach: min(peak_flops, intensity · bandwidth), in the units given
    (GFLOP/s with GB/s). Below the ridge point peak_flops / bandwidth the op waits for memory."""
    raise NotImplementedError("stage 12 (where the time and memory go): roofline")


# ---------------------------------------------------------------------- flash attention


def flash_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, tile: int = 64) -> Tensor:
    """Stage 06's scaled_dot_product_attention (no bias), computed tile by tile: never a (T, S) array. One fused op.

    Forward, for each block of `tile` query rows, over the key blocks in order (causal: only those with a visible
    key), with running row maximum m, running sum l and accumulator a (start -inf, 0, 0):
        Sc = q_i k_jᵀ · scale (masked);  m' = max(m, rowmax Sc);  P = exp(Sc − m');  c = exp(m − m')
        l = l·c + rowsum P;  a = a·c + P v_j;  m = m'          then  O_i = a / l,  lse_i = m + log l.
    Keep only O and lse (B, H, T). Backward, per key block j and query block i: P = exp(Sc − lse_i) (recomputed),
    dV_j += Pᵀ dO_i; dP = dO_i v_jᵀ; dSc = P ⊙ (dP − D_i) · scale with D = rowsum(dO ⊙ O); dQ_i += dSc k_j;
    dK_j += dScᵀ q_i; dK and dV sum over the query heads of a group. ValueError as stage 06, and for tile < 1.
    """
    raise NotImplementedError("stage 12 (where the time and memory go): flash_attention")


# ---------------------------------------------------------------------- activation checkpointing


def checkpoint(fn: Callable[..., Tensor], *inputs: Tensor) -> Tensor:
    """fn(*inputs) as ONE node that keeps only `inputs`: forward runs fn under no_grad (no graph, nothing saved);
    backward runs fn again with grad on fresh leaves Tensor(x.data, requires_grad=x.requires_grad, dtype=x.dtype),
    calls backward(grad) on that result (the parameters fn uses accumulate their .grad there, as in the plain run)
    and returns the leaves' gradients. fn must compute the same thing twice: no dropout, no other randomness.
    """
    raise NotImplementedError("stage 12 (where the time and memory go): checkpoint")


class Checkpointed(Module):
    """A block whose activations are recomputed in backward: model.blocks = [Checkpointed(b) for b in model.blocks]."""

    def __init__(self, block: Module) -> None:
        self.block = block

    def forward(self, x: Tensor, cache=None, layer: int = 0) -> Tensor:
        """checkpoint(self.block, x); with a key/value cache (decoding: no backward) the block is called as it is."""
        raise NotImplementedError("stage 12 (where the time and memory go): Checkpointed.forward")


# ---------------------------------------------------------------------- mixed precision


def cast(x: Tensor, dtype) -> Tensor:
    """x's values in `dtype`, one op; the gradient goes back as it is (the engine casts it to x's dtype)."""
    raise NotImplementedError("stage 12 (where the time and memory go): cast")


class LossScaler:
    """Dynamic loss scaling: multiply the loss by `scale` so float16 gradients do not underflow, divide it out of the
    float32 gradients, and adapt: an inf/NaN halves the scale (the step is skipped); `growth_interval` clean steps in
    a row double it. `clean_steps` counts the clean steps since the scale last changed or a step overflowed."""

    def __init__(self, scale: float = 2.0**16, growth_interval: int = 2000, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5) -> None:
        self.scale = float(scale)
        self.growth_interval, self.growth_factor, self.backoff_factor = growth_interval, growth_factor, backoff_factor
        self.clean_steps = 0

    def unscale(self, params: Iterable[Tensor]) -> bool:
        """Replace each p.grad (skip None) by p.grad.astype(p.dtype) / scale; True when every value is finite."""
        raise NotImplementedError("stage 12 (where the time and memory go): LossScaler.unscale")

    def update(self, finite: bool) -> None:
        """After a step: not finite -> scale *= backoff_factor, clean_steps = 0; finite -> clean_steps += 1, and when
        it reaches growth_interval, scale *= growth_factor and clean_steps = 0."""
        raise NotImplementedError("stage 12 (where the time and memory go): LossScaler.update")


class MixedPrecision:
    """Training steps with float16 compute copies of float32 master weights (the model's own parameters)."""

    def __init__(self, model: Module, optimizer, scaler: LossScaler | None = None, dtype=np.float16) -> None:
        self.model, self.optimizer = model, optimizer
        self.scaler = LossScaler() if scaler is None else scaler
        self.dtype = np.dtype(dtype)

    def step(self, ids: np.ndarray, targets: np.ndarray) -> dict:
        """One step; returns {"loss": float, "skipped": bool, "scale": the scale this step used}.

        zero_grad; swap every p.data for p.data.astype(dtype) (the compute copy); logits = model(ids)[0];
        loss = cross_entropy(cast(logits, float32), targets) (softmax and loss in float32); (loss · scale).backward();
        put the masters back (in a finally); finite = scaler.unscale(params) and the loss is finite; if finite
        optimizer.step(), else zero_grad (skipped: masters and optimizer state untouched); scaler.update(finite).
        """
        raise NotImplementedError("stage 12 (where the time and memory go): MixedPrecision.step")
