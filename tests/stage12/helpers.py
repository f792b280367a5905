"""Stage 12 helpers shared by the visible suites and the hidden one (a helper exists once): model builders on the
target's own earlier stages, the probes both suites run, the activation allowance (docs/12-systems.md, section 3) and
the tolerances with their reasons."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np

from grader.harness import Mistake, Tol, randomise_parameters, seeded, sibling

TINY = {"vocab_size": 13, "context": 16, "layers": 2, "heads": 4, "width": 16}  # small enough for many probes
ATTENTION_F64 = Tol(1e-9, 1e-12, "float64; the online softmax rescales partial sums that stage 06 adds in one go, so "
                                 "only rounding in the last digits (~1e-16 relative per operation) may differ")
IDENTICAL = Tol(0.0, 0.0, "float64; the recomputation runs the very same operations on the very same numbers")
# float16 rounds to 11 significant bits: u = 2^-11 ≈ 4.9e-4 relative. At the same weights the mixed-precision loss
# differs from the float32 one by a few roundings of values of size ln V ≈ 2.6, and over 12 AdamW steps at lr 1e-3 every
# weight moves by at most ~12 · lr in either run, in the same direction unless a gradient's sign is decided by rounding.
# Measured: 5e-5 at most. The margin is four float16 roundings of the loss, 4 · u · ln 13 ≈ 5e-3.
MIXED_MARGIN = Tol(0.0, 4 * 2.0**-11 * math.log(13),
                   "float16 compute: four roundings (u = 2^-11) of a loss of size ln 13")


def config_of(m, fields: dict):
    """The target's own GPTConfig (stage 09) with these fields."""
    return sibling(m, "gpt").GPTConfig(**fields)


def model_of(m, fields: dict, seed: int, dtype=None):
    """The target's GPT with this config; dtype np.float64 gives it seeded float64 weights by sorted name (so target
    and reference hold the same model), None keeps the constructor's float32 weights."""
    model = sibling(m, "gpt").GPT(config_of(m, fields), rng=seeded(seed))
    if dtype is not None:
        randomise_parameters(model, seed + 1, dtype)
    return model


def batch_of(seed: int, vocab_size: int, batch: int, length: int) -> dict:
    """ids and targets, (batch, length) int64, the documented dtype of the activation formula's index arrays."""
    rng = seeded(seed)
    return {"ids": rng.integers(0, vocab_size, (batch, length)),
            "targets": rng.integers(0, vocab_size, (batch, length))}


def activation_allowance(fields: dict, batch: int, length: int, itemsize: int = 4, checkpointed: bool = False) -> int:
    """The bytes activation_bytes leaves out, as the documented ops keep them (docs/12-systems.md, section 3):

      - each norm's per-row statistic, (B, T, 1): two per layer (none when checkpointed) and the final norm's;
      - rotary's cos and sin: at most two float64 (context, Dh / 2) tables per layer (a float32 model keeps four
        float32 (T, Dh / 2) slices: the same bytes when T = context, fewer otherwise);
      - int64 index arrays of B · T: the ids (the embedding's lookup), the flattened targets and the scored rows
        (cross-entropy), and the learned positions 0 .. T - 1.
    Measured minus predicted must lie in [0, this]."""
    config = {"context": 64, "layers": 4, "heads": 4, "width": 128, "position": "rotary", **fields}
    B, T, L = batch, length, config["layers"]
    head_dim = config["width"] // config["heads"]
    per_layer = 0 if checkpointed else 2 * B * T * itemsize + (
        8 * config["context"] * head_dim if config["position"] == "rotary" else 0)
    indices = 3 * B * T * 8 + (8 * T if config["position"] == "learned" else 0)
    return L * per_layer + B * T * itemsize + indices


# ---------------------------------------------------------------- probes


def keeping(kept: np.ndarray, previous):
    """A backward whose closure holds `kept` and the Tensor `previous`."""
    return lambda g: (g * kept[0] + 0 * previous.data,)


def probe_formulas(m, fields: dict, batch: int, length: int, itemsize: int = 4) -> dict:
    """Every accounting formula of the target for one config."""
    config = config_of(m, fields)
    return {"parameters": m.parameter_count(config), "flops": m.step_flops(config, batch, length),
            "activations": m.activation_bytes(config, batch, length, itemsize),
            "checkpointed": m.activation_bytes(config, batch, length, itemsize, checkpointed=True),
            "memory": m.training_memory(config, batch, length, itemsize)}


def probe_measured(m, fields: dict, seed: int, batch: int, length: int, float64: bool = False,
                   checkpointed: bool = False, train: bool = True) -> dict:
    """One forward and backward of the target's model: FLOPs counted by the target's FlopCounter, the activations by
    its saved_bytes, the real arrays' bytes, and the target's own predictions for the same config."""
    model = model_of(m, fields, seed, np.float64 if float64 else None)
    model.train(train)
    if checkpointed:
        model.blocks = [m.Checkpointed(block) for block in model.blocks]
    optimizer = sibling(m, "optim").AdamW(model.parameters(), lr=1e-3)
    data = batch_of(seed + 2, fields["vocab_size"], batch, length)
    with m.FlopCounter() as flops:
        loss = model(data["ids"], data["targets"])[1]
    activations = m.saved_bytes(loss)
    loss.backward()
    config, itemsize = config_of(m, fields), 8 if float64 else 4
    return {"flops": {"forward": flops.forward, "backward": flops.backward},
            "activations": activations,
            "memory": {"parameters": sum(p.data.nbytes for p in model.parameters()),
                       "gradients": sum(p.grad.nbytes for p in model.parameters()),
                       "optimizer": sum(array.nbytes for arrays in optimizer.state.values() for array in arrays)},
            "predicted_flops": m.step_flops(config, batch, length),
            "predicted_activations": m.activation_bytes(config, batch, length, itemsize, checkpointed=checkpointed),
            "predicted_memory": m.training_memory(config, batch, length, itemsize),
            "model_parameters": model.num_parameters()}


ACTIVATION_MISTAKES = (
    Mistake("the prediction is far above what the graph keeps: count each array once (the norm's output is ONE "
            "array read by the query, key and value products), and probabilities B·H·T², not B·H·T·S·Dh",
            lambda got, want: got > want),
    Mistake("the prediction is below what the graph keeps: per layer the norms keep x̂ AND hand their output to a "
            "matmul (4·B·T·C), attention keeps P (B·H·T²) besides q, k, v, and swiglu keeps five (B, T, F) arrays",
            lambda got, want: got < want),
)


def judge_activations(got: dict, fields: dict, batch: int, length: int, what: str, itemsize: int = 4,
                      checkpointed: bool = False) -> None:
    """0 <= measured - predicted <= the allowance of the terms the formula leaves out."""
    from grader.harness import assert_true
    extra = got["activations"] - got["predicted_activations"]
    allowance = activation_allowance(fields, batch, length, itemsize, checkpointed)
    assert_true(0 <= extra <= allowance,
                f"{what}: saved_bytes measured {got['activations']:,} bytes, activation_bytes predicted "
                f"{got['predicted_activations']:,}: the difference {extra:,} must lie in [0, {allowance:,}], the bytes "
                "of the per-row norm statistics, rotary's cos/sin and the int64 indices, which the formula leaves "
                "out (docs/12-systems.md, section 3). "
                + ("Measured < predicted: the formula counts an array the graph does not keep, or the walk misses "
                   "closures (a function inside a cell, a tuple of Tensors), or counts a view's buffer twice."
                   if extra < 0 else
                   "Measured far above predicted: the formula misses an array the ops keep, or the walk counts "
                   "parameters (leaves) or a buffer twice through its views (follow .base)."))


def probe_saved_bytes(m, shapes: list) -> dict:
    """Hand-built graphs with known closures (float64): see the visible test for the expected bytes."""
    tensor = sibling(m, "tensor")
    Tensor, op = tensor.Tensor, tensor.op
    leaf = Tensor(np.ones(shapes[0]), requires_grad=True, dtype=np.float64)  # 8 · prod(shapes[0]) bytes, a leaf
    kept = np.ones(shapes[1])  # an activation some closure keeps
    first = op(leaf.data * 2.0, (leaf,), lambda g: (g * kept,))  # keeps `kept`
    view = kept.reshape(-1)[: kept.size // 2]  # a view of `kept`: the same buffer
    second = op(first.data + 1.0, (first, leaf), lambda g: (g * view[0], g * leaf.data))  # a view and a leaf's array
    pair = (first, np.ones(shapes[2]))
    third = op(second.data.sum(), (second,), lambda g: (np.broadcast_to(g, second.shape) + 0 * pair[0].data,))
    return {"leaf": m.saved_bytes(leaf), "first": m.saved_bytes(first), "second": m.saved_bytes(second),
            "third": m.saved_bytes(third)}


def probe_flash(m, q, k, v, weights, causal: bool = False, tile: int = 64, dtype: str = "float64") -> dict:
    """flash_attention's output and the gradients of L = sum(out · weights), beside stage 06's attention's."""
    tensor, attention = sibling(m, "tensor"), sibling(m, "attention")
    result = {}
    for name, attend in (("flash", lambda *x: m.flash_attention(*x, causal=causal, tile=tile)),
                         ("stage06", lambda *x: attention.scaled_dot_product_attention(*x, causal=causal))):
        leaves = [tensor.Tensor(x.astype(dtype), requires_grad=True, dtype=dtype) for x in (q, k, v)]
        out = attend(*leaves)
        out.backward(weights.astype(dtype))
        result[name] = {"out": out.data, "grad_q": leaves[0].grad, "grad_k": leaves[1].grad,
                        "grad_v": leaves[2].grad}
    return result


def attention_inputs(seed: int, B: int, H: int, Hkv: int, T: int, S: int, Dh: int) -> dict:
    rng = seeded(seed)
    return {"q": rng.standard_normal((B, H, T, Dh)), "k": rng.standard_normal((B, Hkv, S, Dh)),
            "v": rng.standard_normal((B, Hkv, S, Dh)), "weights": rng.standard_normal((B, H, T, Dh))}


def probe_flash_memory(m, B: int, H: int, T: int, Dh: int, tile: int, seed: int) -> dict:
    """saved_bytes of the flash op's graph, and the traced peak of its forward + backward, both in bytes."""
    tensor = sibling(m, "tensor")
    inputs = attention_inputs(seed, B, H, H, T, T, Dh)
    leaves = [tensor.Tensor(inputs[name], requires_grad=True, dtype=np.float64) for name in "qkv"]
    weights = inputs["weights"]
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    out = m.flash_attention(*leaves, causal=True, tile=tile)
    saved = m.saved_bytes(out)
    out.backward(weights)
    peak = tracemalloc.get_traced_memory()[1] - start
    if not was_tracing:
        tracemalloc.stop()
    return {"saved": saved, "peak": peak}


def probe_checkpoint_model(m, fields: dict, seed: int, batch: int, length: int, checkpointed: list) -> dict:
    """Loss, every parameter's gradient (in parameters() order) and saved_bytes, with blocks[i] wrapped in
    Checkpointed for each i in `checkpointed`."""
    model = model_of(m, fields, seed, np.float64)
    for i in checkpointed:
        model.blocks[i] = m.Checkpointed(model.blocks[i])
    data = batch_of(seed + 2, fields["vocab_size"], batch, length)
    loss = model(data["ids"], data["targets"])[1]
    saved = m.saved_bytes(loss)
    loss.backward()
    return {"loss": loss.item(), "grads": [p.grad for p in model.parameters()], "saved": saved}


def probe_scaler(m, flags: list, scale: float, growth_interval: int, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5) -> dict:
    """LossScaler.update over a sequence of finite/overflow flags: the scale and clean_steps after each."""
    scaler = m.LossScaler(scale, growth_interval, growth_factor, backoff_factor)
    scales, clean = [], []
    for finite in flags:
        scaler.update(finite)
        scales.append(scaler.scale)
        clean.append(scaler.clean_steps)
    return {"scales": scales, "clean_steps": clean}


def probe_unscale(m, grads: list, scale: float) -> dict:
    """unscale on float32 parameters holding float16 gradients (None: no gradient)."""
    tensor = sibling(m, "tensor")
    params = [tensor.Tensor(np.zeros(np.shape(g) if g is not None else (2,), dtype=np.float32), requires_grad=True)
              for g in grads]
    for p, g in zip(params, grads):
        p.grad = None if g is None else np.asarray(g, dtype=np.float16)
    finite = m.LossScaler(scale).unscale(params)
    return {"finite": finite, "grads": [None if p.grad is None else p.grad for p in params],
            "dtypes": [None if p.grad is None else str(p.grad.dtype) for p in params]}


def batches(seed: int, vocab_size: int, steps: int, batch: int, length: int) -> list:
    """`steps` (ids, targets) windows of one seeded token stream, as a list of dicts of int64 arrays."""
    rng = seeded(seed)
    stream = rng.integers(0, vocab_size, 400)
    out = []
    for _ in range(steps):
        starts = rng.integers(0, stream.size - length - 1, batch)
        out.append({"ids": np.stack([stream[s:s + length] for s in starts]),
                    "targets": np.stack([stream[s + 1:s + length + 1] for s in starts])})
    return out


def probe_mixed_run(m, fields: dict, seed: int, steps: int, lr: float, scales: list | None = None) -> dict:
    """The same seeded model trained on the same batches twice: in float32 (the plain loop) and with MixedPrecision.
    scales[k], when given, is set as the scaler's scale before mixed step k (an injected overflow). Also records the
    dtype of the logits the mixed forward made and of the masters after it."""
    optim = sibling(m, "optim")
    data = batches(seed + 3, fields["vocab_size"], steps, 4, fields["context"])
    plain_model = model_of(m, fields, seed)
    plain_optimizer = optim.AdamW(plain_model.parameters(), lr=lr, weight_decay=0.0)
    plain = []
    for window in data:
        plain_optimizer.zero_grad()
        loss = plain_model(window["ids"], window["targets"])[1]
        loss.backward()
        plain_optimizer.step()
        plain.append(loss.item())
    model = model_of(m, fields, seed)
    optimizer = optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    trainer = m.MixedPrecision(model, optimizer)
    dtypes = []
    forward = model.forward

    def recording(*args, **kwargs):
        logits, loss = forward(*args, **kwargs)
        dtypes.append(str(logits.dtype))
        return logits, loss

    model.forward = recording  # Module.__call__ calls self.forward: this instance's records the compute dtype
    mixed, skipped, used = [], [], []
    for k, window in enumerate(data):
        if scales is not None and scales[k] is not None:
            trainer.scaler.scale = scales[k]
        before = [p.data.copy() for p in model.parameters()]
        state_before = [int(s) for s in optimizer.steps]
        result = trainer.step(window["ids"], window["targets"])
        mixed.append(result["loss"])
        skipped.append(result["skipped"])
        used.append(result["scale"])
        if result["skipped"]:
            unchanged = all(np.array_equal(a, p.data) for a, p in zip(before, model.parameters()))
            if not unchanged or [int(s) for s in optimizer.steps] != state_before:
                skipped[-1] = "applied anyway"
    return {"plain": plain, "mixed": mixed, "skipped": skipped, "scales_used": used,
            "scale_after": trainer.scaler.scale, "logits_dtypes": sorted(set(dtypes)),
            "master_dtypes": sorted({str(p.data.dtype) for p in model.parameters()})}
