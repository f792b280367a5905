"""Stage 12: where the time and memory go.

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
    ### BEGIN SOLUTION
    C, V, F = config.width, config.vocab_size, feed_forward_hidden(config)
    kv_width = (config.kv_heads or config.heads) * (C // config.heads)  # Hkv · Dh
    norm = C if config.norm == "rms" else 2 * C
    feed_forward = 3 * C * F if config.feed_forward == "swiglu" else 2 * C * F + F + C
    block = 2 * C * C + 2 * C * kv_width + feed_forward + 2 * norm
    positions = config.context * C if config.position == "learned" else 0
    head = 0 if config.tie_embeddings else C * V
    return V * C + positions + config.layers * block + norm + head
    ### END SOLUTION


def step_flops(config: GPTConfig, batch: int, length: int | None = None) -> dict[str, int]:
    """FLOPs of the matrix products of one training step on `batch` sequences of `length` tokens (default context).

    {"forward": 2·M·B·T + 4·L·B·T²·C, "backward": twice the forward}, where M is the number of weights that
    multiply (every block matrix, and the head: the token table when tied, the head when not; no norm weights, biases
    or lookup tables) and 4·B·T²·C per layer is attention's q kᵀ and P v (dense: the causal mask saves nothing).
    """
    ### BEGIN SOLUTION
    C, L, F = config.width, config.layers, feed_forward_hidden(config)
    B, T = batch, length or config.context
    kv_width = (config.kv_heads or config.heads) * (C // config.heads)
    feed_forward = (3 if config.feed_forward == "swiglu" else 2) * C * F
    multiplying = L * (2 * C * C + 2 * C * kv_width + feed_forward) + C * config.vocab_size
    forward = 2 * multiplying * B * T + 4 * L * B * T * T * C
    return {"forward": forward, "backward": 2 * forward}
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    C, H, V, F = config.width, config.heads, config.vocab_size, feed_forward_hidden(config)
    B, T = batch, length or config.context
    kv_width = (config.kv_heads or H) * (C // H)
    dropout = config.dropout > 0
    if checkpointed:
        layer = B * T * C
    else:
        feed_forward = (5 if config.feed_forward == "swiglu" else 3) * B * T * F
        layer = 6 * B * T * C + 2 * B * T * kv_width + B * H * T * T + feed_forward + (2 * B * T * C if dropout else 0)
    top = 2 * B * T * C + 2 * B * T * V + (B * T * C if dropout else 0)
    return itemsize * (config.layers * layer + top)
    ### END SOLUTION


def training_memory(config: GPTConfig, batch: int, length: int | None = None, itemsize: int = 4) -> dict[str, int]:
    """The bytes of one AdamW training step: {"parameters", "gradients", "optimizer", "activations"}.

    N = parameter_count(config) numbers each for parameters and gradients, 2·N for AdamW's two moments (exp_avg and
    exp_avg_sq, in the parameters' dtype), all times itemsize; activations from activation_bytes.
    """
    ### BEGIN SOLUTION
    parameters = parameter_count(config) * itemsize
    return {"parameters": parameters, "gradients": parameters, "optimizer": 2 * parameters,
            "activations": activation_bytes(config, batch, length, itemsize)}
    ### END SOLUTION


# ---------------------------------------------------------------------- accounting: measured

### BEGIN SOLUTION
def _owner(array: np.ndarray) -> np.ndarray:
    """The array that owns a view's memory (a view of a view points at the owner too)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _arrays(value, depth: int = 0) -> Iterable[np.ndarray]:
    """The arrays a closure cell holds: an array, a Tensor's data, those inside a tuple or list, and those in the
    closure of a function it holds (a wrapped backward, such as FlopCounter's)."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, Tensor):
        yield value.data
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _arrays(item, depth)
    elif callable(value) and getattr(value, "__closure__", None) and depth < 8:  # bounded: closures may be cyclic
        for cell in value.__closure__:
            yield from _arrays(cell.cell_contents, depth + 1)
### END SOLUTION


def saved_bytes(output: Tensor) -> int:
    """Bytes of the arrays that the backward closures of `output`'s graph keep: the activations, measured.

    Walk the graph from `output` through `_parents` (iteratively: graphs are thousands of nodes deep). For every node
    with a `_backward`, look into its closure cells (`_backward.__closure__`, each `cell.cell_contents`): an ndarray,
    a Tensor (its `.data`), a tuple/list of those, or a function, whose closure holds them in turn (a wrapped
    backward, as FlopCounter makes). Count each memory buffer once, however many views and closures share it (follow
    `.base` to the array that owns the memory), and skip the leaves' arrays (parameters and constants are not
    activations). 0 for a graph-less tensor.
    """
    ### BEGIN SOLUTION
    nodes, seen, stack = [], {id(output)}, [output]
    while stack:
        node = stack.pop()
        nodes.append(node)
        for parent in node._parents:
            if id(parent) not in seen:
                seen.add(id(parent))
                stack.append(parent)
    leaves = {id(_owner(node.data)) for node in nodes if node._backward is None}
    kept: dict[int, int] = {}  # id of the owning buffer -> its bytes
    for node in nodes:
        for array in _arrays(node._backward) if node._backward is not None else ():
            owner = _owner(array)
            if id(owner) not in leaves:
                kept[id(owner)] = owner.nbytes
    return sum(kept.values())
    ### END SOLUTION


def matmul_flops(a_shape: Sequence[int], b_shape: Sequence[int]) -> int:
    """FLOPs of the forward product a @ b, (..., n, k) @ (..., k, m): 2·n·k·m for each of the broadcast batch's
    matrices (np.broadcast_shapes of the leading axes). E.g. (2, 3, 4) @ (4, 5): 2 · 2·3·4·5 = 240."""
    ### BEGIN SOLUTION
    *batch_a, n, k = a_shape
    *batch_b, _, m = b_shape
    return 2 * math.prod(np.broadcast_shapes(tuple(batch_a), tuple(batch_b))) * n * k * m
    ### END SOLUTION


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

    ### BEGIN SOLUTION
    def _count(self, out: Tensor, flops: int) -> Tensor:
        """Add a node's forward FLOPs now and twice them when its backward runs."""
        self.forward += flops
        original = out._backward
        if original is not None:
            def backward(grad: np.ndarray):
                self.backward += 2 * flops
                return original(grad)
            out._backward = backward
        return out
    ### END SOLUTION

    def __enter__(self) -> FlopCounter:
        ### BEGIN SOLUTION
        self._originals = matmul, attend = Tensor.__matmul__, attention.scaled_dot_product_attention

        def counted_matmul(a: Tensor, b) -> Tensor:
            return self._count(matmul(a, b), matmul_flops(a.shape, np.shape(getattr(b, "data", b))))

        def counted_attention(q: Tensor, k: Tensor, v: Tensor, **options) -> Tensor:
            (B, H, T, Dh), S = q.shape, k.shape[2]
            flops = matmul_flops((B, H, T, Dh), (B, H, Dh, S)) + matmul_flops((B, H, T, S), (B, H, S, Dh))
            return self._count(attend(q, k, v, **options), flops)

        Tensor.__matmul__ = counted_matmul
        attention.scaled_dot_product_attention = counted_attention
        return self
        ### END SOLUTION

    def __exit__(self, *error) -> None:
        ### BEGIN SOLUTION
        Tensor.__matmul__, attention.scaled_dot_product_attention = self._originals
        ### END SOLUTION


# ---------------------------------------------------------------------- the roofline


def measure_matmul(sizes: Sequence[int], seed: int = 0, repeats: int = 3) -> list[float]:
    """GFLOP/s of float32 (n, n) @ (n, n) for each n in sizes: 2·n³ / (best of `repeats` timings after one untimed
    warm-up) / 1e9, with both matrices drawn from np.random.default_rng(seed); a timing is the difference of two
    time.perf_counter() readings around one product. The best, not the mean: the machine can only make a product
    slower, never faster."""
    ### BEGIN SOLUTION
    rng = np.random.default_rng(seed)
    rates = []
    for n in sizes:
        a, b = rng.standard_normal((2, n, n), dtype=np.float32)
        a @ b  # warm-up: page faults and thread start-up are not the product's cost
        best = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - started)
        rates.append(2 * n**3 / best / 1e9)
    return rates
    ### END SOLUTION


def measure_bandwidth(megabytes: float = 64, seed: int = 0, repeats: int = 3) -> float:
    """Memory bandwidth in GB/s: copy a float32 array of `megabytes` (2**20 bytes each, drawn from
    np.random.default_rng(seed)) into another with np.copyto; a copy reads and writes every byte, so
    2 · nbytes / best time / 1e9 (one untimed warm-up, then the best of `repeats`, each timed with two
    time.perf_counter() readings around one copy)."""
    ### BEGIN SOLUTION
    source = np.random.default_rng(seed).standard_normal(int(megabytes * 2**20) // 4, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)  # warm-up: the first write to fresh pages costs page faults
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - started)
    return 2 * source.nbytes / best / 1e9
    ### END SOLUTION


def matmul_intensity(n: int, k: int, m: int, itemsize: int = 4) -> float:
    """FLOPs per byte of (n, k) @ (k, m) when each matrix crosses memory once:
    2·n·k·m / (itemsize·(n·k + k·m + n·m))."""
    ### BEGIN SOLUTION
    return 2 * n * k * m / (itemsize * (n * k + k * m + n * m))
    ### END SOLUTION


def attention_intensity(T: int, S: int, head_dim: int, itemsize: int = 4, tiled: bool = False) -> float:
    """FLOPs per byte of one head's attention forward: 4·T·S·Dh FLOPs (q kᵀ and P v) over the bytes moved.

    Tiled (flash): read q, k, v and write the output once: itemsize·(2·T·Dh + 2·S·Dh). Untiled: that plus the (T, S)
    scores written and read back by the softmax and the probabilities written and read back by P v: + itemsize·4·T·S.
    """
    ### BEGIN SOLUTION
    moved = 2 * T * head_dim + 2 * S * head_dim + (0 if tiled else 4 * T * S)
    return 4 * T * S * head_dim / (itemsize * moved)
    ### END SOLUTION


def roofline(intensity: float, peak_flops: float, bandwidth: float) -> float:
    """The FLOP rate an op of this intensity can reach: min(peak_flops, intensity · bandwidth), in the units given
    (GFLOP/s with GB/s). Below the ridge point peak_flops / bandwidth the op waits for memory."""
    ### BEGIN SOLUTION
    return min(peak_flops, intensity * bandwidth)
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    B, H, T, Dh = q.shape
    _, Hkv, S, _ = k.shape
    if k.shape != v.shape or k.shape[0] != B or k.shape[3] != Dh or H % Hkv:
        raise ValueError(f"flash_attention: q {q.shape} needs k and v (B, kv_heads, S, Dh) with kv_heads dividing "
                         f"the heads, got {k.shape} and {v.shape}")
    if causal and S < T:
        raise ValueError(f"causal attention with fewer keys (S={S}) than queries (T={T}) would fully mask a row")
    if tile < 1:
        raise ValueError(f"flash_attention: tile must be >= 1, got {tile}")
    G, scale, offset = H // Hkv, 1.0 / math.sqrt(Dh), S - T  # query i sits at position offset + i
    queries = q.data.reshape(B, Hkv, G, T, Dh)  # a view: query head h = (h // G, h % G)
    keys, values = k.data[:, :, None], v.data[:, :, None]  # (B, Hkv, 1, S, Dh): shared by the G heads of a group
    dtype = q.dtype

    def scores(i0: int, i1: int, j0: int, j1: int) -> np.ndarray:
        """Sc of query rows i0..i1-1 against keys j0..j1-1, (B, Hkv, G, i1-i0, j1-j0), the future at -inf."""
        block = (queries[..., i0:i1, :] @ keys[..., j0:j1, :].swapaxes(-1, -2)) * scale
        if causal and j1 - 1 > offset + i0:  # some key of this block is after some query of it
            visible = np.arange(j0, j1)[None, :] <= offset + np.arange(i0, i1)[:, None]  # (rows, keys)
            block += np.where(visible, 0.0, -np.inf).astype(dtype)
        return block

    def key_end(i1: int) -> int:  # keys a block of rows ending at i1 - 1 can see
        return min(S, offset + i1) if causal else S

    out = np.empty_like(queries)  # (B, Hkv, G, T, Dh)
    lse = np.empty(queries.shape[:-1], dtype=dtype)  # (B, Hkv, G, T): log-sum-exp of each row's scores
    for i0 in range(0, T, tile):
        i1 = min(i0 + tile, T)
        row_max = np.full(queries.shape[:3] + (i1 - i0,), -np.inf, dtype=dtype)  # (B, Hkv, G, rows)
        row_sum = np.zeros_like(row_max)
        total = np.zeros(queries.shape[:3] + (i1 - i0, Dh), dtype=dtype)
        for j0 in range(0, key_end(i1), tile):  # key block 0 holds key 0, visible to all: the max is finite after it
            j1 = min(j0 + tile, S)
            block = scores(i0, i1, j0, j1)
            new_max = np.maximum(row_max, block.max(axis=-1))
            probs = np.exp(block - new_max[..., None])  # (B, Hkv, G, rows, keys); exp(-inf) = 0 on the future
            correction = np.exp(row_max - new_max)  # rescales what was summed under the old maximum
            row_sum = row_sum * correction + probs.sum(axis=-1)
            total = total * correction[..., None] + probs @ values[..., j0:j1, :]
            row_max = new_max
        out[..., i0:i1, :] = total / row_sum[..., None]
        lse[..., i0:i1] = row_max + np.log(row_sum)

    def backward(grad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        grad = grad.reshape(B, Hkv, G, T, Dh)  # dO
        delta = (grad * out).sum(axis=-1)  # (B, Hkv, G, T): rowsum(dP ⊙ P) = dO · O, row by row
        grad_q = np.zeros_like(queries)
        grad_k, grad_v = np.zeros_like(k.data), np.zeros_like(v.data)  # (B, Hkv, S, Dh)
        for j0 in range(0, S, tile):
            j1 = min(j0 + tile, S)
            first = max(0, j0 - offset) if causal else 0  # the first query that sees key j0
            for i0 in range(first // tile * tile, T, tile):
                i1 = min(i0 + tile, T)
                probs = np.exp(scores(i0, i1, j0, j1) - lse[..., i0:i1, None])  # P of this tile, recomputed
                grad_out = grad[..., i0:i1, :]  # (B, Hkv, G, rows, Dh)
                grad_v[:, :, j0:j1] += (probs.swapaxes(-1, -2) @ grad_out).sum(axis=2)  # Pᵀ dO, summed over G
                grad_s = grad_out @ values[..., j0:j1, :].swapaxes(-1, -2)  # dP = dO vᵀ
                grad_s -= delta[..., i0:i1, None]
                grad_s *= probs * scale  # dSc · scale, folded in once for dQ and dK
                grad_q[..., i0:i1, :] += grad_s @ keys[..., j0:j1, :]
                grad_k[:, :, j0:j1] += (grad_s.swapaxes(-1, -2) @ queries[..., i0:i1, :]).sum(axis=2)
        return grad_q.reshape(B, H, T, Dh), grad_k, grad_v

    return op(out.reshape(B, H, T, Dh), (q, k, v), backward)
    ### END SOLUTION


# ---------------------------------------------------------------------- activation checkpointing


def checkpoint(fn: Callable[..., Tensor], *inputs: Tensor) -> Tensor:
    """fn(*inputs) as ONE node that keeps only `inputs`: forward runs fn under no_grad (no graph, nothing saved);
    backward runs fn again with grad on fresh leaves Tensor(x.data, requires_grad=x.requires_grad, dtype=x.dtype),
    calls backward(grad) on that result (the parameters fn uses accumulate their .grad there, as in the plain run)
    and returns the leaves' gradients. fn must compute the same thing twice: no dropout, no other randomness.
    """
    ### BEGIN SOLUTION
    with no_grad():
        out = fn(*inputs)  # a constant: the graph inside fn is neither built nor kept

    def backward(grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        leaves = [Tensor(x.data, requires_grad=x.requires_grad, dtype=x.dtype) for x in inputs]
        fn(*leaves).backward(grad)  # one layer's graph, alive only during this call
        return tuple(leaf.grad for leaf in leaves)

    return op(out.data, tuple(inputs), backward)
    ### END SOLUTION


class Checkpointed(Module):
    """A block whose activations are recomputed in backward: model.blocks = [Checkpointed(b) for b in model.blocks]."""

    def __init__(self, block: Module) -> None:
        self.block = block

    def forward(self, x: Tensor, cache=None, layer: int = 0) -> Tensor:
        """checkpoint(self.block, x); with a key/value cache (decoding: no backward) the block is called as it is."""
        ### BEGIN SOLUTION
        if cache is not None:
            return self.block(x, cache, layer)
        return checkpoint(self.block, x)
        ### END SOLUTION


# ---------------------------------------------------------------------- mixed precision


def cast(x: Tensor, dtype) -> Tensor:
    """x's values in `dtype`, one op; the gradient goes back as it is (the engine casts it to x's dtype)."""
    ### BEGIN SOLUTION
    return op(x.data.astype(dtype), (x,), lambda grad: (grad,))
    ### END SOLUTION


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
        ### BEGIN SOLUTION
        finite = True
        for p in params:
            if p.grad is not None:
                p.grad = p.grad.astype(p.dtype) / self.scale  # in the master's dtype first: float16 would underflow
                finite = finite and bool(np.isfinite(p.grad).all())
        return finite
        ### END SOLUTION

    def update(self, finite: bool) -> None:
        """After a step: not finite -> scale *= backoff_factor, clean_steps = 0; finite -> clean_steps += 1, and when
        it reaches growth_interval, scale *= growth_factor and clean_steps = 0."""
        ### BEGIN SOLUTION
        if not finite:
            self.scale *= self.backoff_factor
            self.clean_steps = 0
            return
        self.clean_steps += 1
        if self.clean_steps == self.growth_interval:
            self.scale *= self.growth_factor
            self.clean_steps = 0
        ### END SOLUTION


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
        ### BEGIN SOLUTION
        params = self.model.parameters()
        masters = [p.data for p in params]
        self.optimizer.zero_grad()
        scale = self.scaler.scale
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is expected now and then: it is caught
                for p in params:
                    p.data = p.data.astype(self.dtype)  # the compute copy; the graph and the gradients follow it
                logits, _ = self.model(ids)
                loss = cross_entropy(cast(logits, np.float32), targets)
                (loss * scale).backward()
        finally:
            for p, master in zip(params, masters):
                p.data = master
        finite = self.scaler.unscale(params) and bool(np.isfinite(loss.item()))
        if finite:
            self.optimizer.step()
        else:
            self.optimizer.zero_grad()
        self.scaler.update(finite)
        return {"loss": loss.item(), "skipped": not finite, "scale": scale}
        ### END SOLUTION
