"""Stage 17 helpers shared by the visible suites and the hidden one (a helper exists once): the probes both suites
run, the hand-built two-expert layer and the tolerances with their reasons."""
from __future__ import annotations

import math

import numpy as np

from grader.harness import central_difference, raised, randomise_parameters, seeded, sibling

TINY = {"vocab_size": 13, "context": 16, "layers": 2, "heads": 4, "width": 16}  # small enough for a training run


def silu(z: float) -> float:
    """x · σ(x), written out for hand computations."""
    return z / (1.0 + math.exp(-z))


# ---------------------------------------------------------------- probes of the pieces


def probe_capacity(m, cases: list) -> list:
    """expert_capacity for each (tokens, experts, top_k, capacity_factor), or the refusal recorded."""
    return [raised(m.expert_capacity, *case, mentions=mentions) for *case, mentions in cases]


def probe_top_k(m, probabilities: np.ndarray, k: int) -> np.ndarray:
    return m.top_k_experts(np.asarray(probabilities, dtype=np.float64), k)


def probe_claim(m, choices: list, experts: int, capacity: int) -> np.ndarray:
    return m.claim_slots(np.asarray(choices, dtype=np.int64), experts, capacity)


def probe_index_add(m, values: np.ndarray, rows: list, size: int, weights: np.ndarray) -> dict:
    """index_add forward, and the gradient of sum(out · weights) with respect to values."""
    tensor = sibling(m, "tensor")
    leaf = tensor.Tensor(values.copy(), requires_grad=True, dtype=np.float64)
    out = m.index_add(leaf, np.asarray(rows, dtype=np.int64), size)
    (out * weights).sum().backward()
    return {"out": out.data, "grad": leaf.grad, "dtype": str(out.dtype)}


def probe_balance(m, probabilities: np.ndarray, choices: list, experts: int) -> dict:
    """The balance loss of float64 probabilities and its gradient (loss.backward() seeds 1)."""
    tensor = sibling(m, "tensor")
    leaf = tensor.Tensor(np.asarray(probabilities, dtype=np.float64).copy(), requires_grad=True, dtype=np.float64)
    loss = m.load_balancing_loss(leaf, np.asarray(choices, dtype=np.int64), experts)
    loss.backward()
    return {"loss": float(loss.item()), "shape": list(loss.shape), "grad": leaf.grad}


# ---------------------------------------------------------------- the layer


def hand_layer(m, capacity_factor: float = 2.0, top_k: int = 1):
    """Width 1, two SwiGLU experts of hidden 1, float64, weights set by hand:
    router [[0, 1]], so p_1 = σ(x) and p_0 = 1 - σ(x); expert 0: silu(x) · x; expert 1: -(silu(x) · 2x)."""
    tensor = sibling(m, "tensor")
    layer = m.MoE(1, 1, 2, top_k, capacity_factor, rng=seeded(0))
    values = {"router.weight": [[0.0, 1.0]], "experts.0.gate.weight": [[1.0]], "experts.0.up.weight": [[1.0]],
              "experts.0.down.weight": [[1.0]], "experts.1.gate.weight": [[1.0]], "experts.1.up.weight": [[2.0]],
              "experts.1.down.weight": [[-1.0]]}
    named = dict(layer.named_parameters())
    for name, value in values.items():
        named[name].data = np.array(value, dtype=np.float64)
    return layer, tensor


def hand_expert(e: int, x: float) -> float:
    """The hand layer's expert e at x."""
    return silu(x) * x if e == 0 else -silu(x) * 2 * x


def probe_hand_layer(m, x: list, capacity_factor: float, top_k: int) -> dict:
    layer, tensor = hand_layer(m, capacity_factor, top_k)
    out = layer(tensor.Tensor(np.asarray(x, dtype=np.float64).reshape(-1, 1), dtype=np.float64))
    return {"out": out.data.reshape(-1), "choices": layer.choices, "kept": layer.kept,
            "aux": float(layer.aux_loss.item())}


def layer_of(m, width: int, hidden: int, experts: int, top_k: int, capacity_factor: float, feed_forward: str,
             seed: int):
    """The target's MoE with seeded float64 weights by sorted name (target and reference hold the same layer)."""
    layer = m.MoE(width, hidden, experts, top_k, capacity_factor, rng=seeded(seed), feed_forward=feed_forward)
    randomise_parameters(layer, seed + 1, np.float64)
    return layer


def probe_layer(m, x: np.ndarray, weights: np.ndarray, alpha: float, layer: dict, zero_router: bool = False) -> dict:
    """Forward of a seeded float64 layer on x (..., width), the loss sum(out · weights) + alpha · aux, and the
    gradients of every parameter and of x; zero_router makes every probability 1/E (all ties)."""
    tensor = sibling(m, "tensor")
    module = layer_of(m, **layer)
    if zero_router:
        module.router.weight.data[...] = 0.0
    leaf = tensor.Tensor(x.copy(), requires_grad=True, dtype=np.float64)
    out = module(leaf)
    loss = (out * weights).sum() + module.aux_loss * alpha
    loss.backward()
    return {"out": out.data, "aux": float(module.aux_loss.item()), "choices": module.choices, "kept": module.kept,
            "grad_x": leaf.grad,
            "grads": {name: (p.grad if p.grad is not None else np.zeros_like(p.data))
                      for name, p in module.named_parameters()}}


def probe_layer_gradcheck(m, x: np.ndarray, weights: np.ndarray, alpha: float, layer: dict) -> dict:
    """Central differences of the target's own forward (sum(out · weights) + alpha · aux) for x, the router and
    every expert matrix, beside its backward; `margin` is the smallest gap between a kept choice's probability and
    the best unchosen one (a gap below eps would let a difference flip the routing)."""
    tensor = sibling(m, "tensor")
    module = layer_of(m, **layer)
    x = x.copy()
    leaf = tensor.Tensor(x, requires_grad=True, dtype=np.float64)

    def loss_value() -> float:
        with tensor.no_grad():
            out = module(tensor.Tensor(x, dtype=np.float64))
            return float(((out * weights).sum() + module.aux_loss * alpha).item())

    out = module(leaf)
    ((out * weights).sum() + module.aux_loss * alpha).backward()
    numeric = {"x": central_difference(loss_value, x)}
    analytic = {"x": leaf.grad}
    for name, parameter in module.named_parameters():
        numeric[name] = central_difference(loss_value, parameter.data)
        analytic[name] = parameter.grad if parameter.grad is not None else np.zeros_like(parameter.data)
    with tensor.no_grad():
        probabilities = tensor.softmax(module.router(tensor.Tensor(x.reshape(-1, x.shape[-1]), dtype=np.float64)))
    ordered = -np.sort(-probabilities.data, axis=-1)
    k = layer["top_k"]
    margin = float((ordered[:, k - 1] - ordered[:, k]).min()) if k < ordered.shape[1] else 1.0
    return {"analytic": analytic, "numeric": numeric, "margin": margin}


def probe_dropped_in_block(m, x: np.ndarray, seed: int, capacity_factor: float) -> dict:
    """A stage 07 Block whose feed_forward is an MoE (E = 4, k = 1): its output, and the output of the same block
    with the feed-forward contributing exactly 0 (the residual path alone)."""
    blocks, tensor = sibling(m, "blocks"), sibling(m, "tensor")
    moe = m.MoE(8, 24, 4, 1, capacity_factor, rng=seeded(seed + 1))  # first: an unfinished stage 17 fails as such
    block = blocks.Block(8, 2, rng=seeded(seed))
    block.feed_forward = moe
    randomise_parameters(block, seed + 2, np.float64)
    inputs = tensor.Tensor(x, dtype=np.float64)
    with tensor.no_grad():
        out = block(inputs).data
        kept = moe.kept
        block.feed_forward = lambda h: h * 0.0  # the residual path alone
        residual = block(inputs).data
        block.feed_forward = moe
    return {"out": out, "residual": residual, "kept": kept}


# ---------------------------------------------------------------- the model


def moe_config_of(m, fields: dict):
    return m.MoEConfig(**fields)


def probe_counts(m, fields: dict) -> dict:
    """num_parameters of MoEGPT(fields) and of stage 09's GPT with the dense twin config."""
    gpt = sibling(m, "gpt")
    model = m.MoEGPT(moe_config_of(m, fields), rng=seeded(0))
    dense_fields = {k: v for k, v in fields.items()
                    if k not in ("experts", "top_k", "capacity_factor", "aux_loss_weight", "expert_feed_forward")}
    dense_fields["feed_forward"] = fields.get("expert_feed_forward", "swiglu")
    dense = gpt.GPT(gpt.GPTConfig(**dense_fields), rng=seeded(0))
    return {"moe": model.num_parameters(), "dense": dense.num_parameters(),
            "names": [name for name, _ in model.named_parameters()]}


def probe_moe_loss(m, fields: dict, seed: int, ids: np.ndarray, targets: np.ndarray) -> dict:
    """The returned loss, the model's aux_loss, each block's and the plain cross-entropy of the logits."""
    nn = sibling(m, "nn")
    model = m.MoEGPT(moe_config_of(m, fields), rng=seeded(seed))
    logits, loss = model(ids, targets)
    return {"loss": float(loss.item()), "aux": float(model.aux_loss.item()),
            "blocks": [float(block.feed_forward.aux_loss.item()) for block in model.blocks],
            "cross_entropy": float(nn.cross_entropy(logits, targets).item()), "logits": logits.data}


def probe_training(m, fields: dict, seed: int, steps: int, lr: float, dense: bool = False) -> dict:
    """A short seeded AdamW run on one fixed batch of a repeating pattern; the loss and aux loss of every step.
    dense=True trains stage 09's GPT with the dense twin config (the same active parameters when top_k = 1)."""
    gpt, optim = sibling(m, "gpt"), sibling(m, "optim")
    rng = seeded(seed)
    if dense:
        dense_fields = {k: v for k, v in fields.items()
                        if k not in ("experts", "top_k", "capacity_factor", "aux_loss_weight", "expert_feed_forward")}
        model = gpt.GPT(gpt.GPTConfig(**dense_fields), rng=rng)
    else:
        model = m.MoEGPT(moe_config_of(m, fields), rng=rng)
    vocab, context = fields["vocab_size"], fields["context"]
    stream = np.arange(4 * (context + 1)) * 5 % vocab  # a pattern a tiny model can learn
    ids = np.stack([stream[i:i + context] for i in (0, 3, 6, 9)])
    targets = np.stack([stream[i + 1:i + context + 1] for i in (0, 3, 6, 9)])
    optimizer = optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses, aux = [], []
    for _ in range(steps):
        optimizer.zero_grad()
        _, loss = model(ids, targets)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
        aux.append(float(model.aux_loss.item()) if not dense else 0.0)
    return {"losses": losses, "aux": aux}


def probe_initialisation(m, seed: int, layers: int) -> dict:
    """Every parameter of a freshly built MoE (width 16, hidden 48, 4 experts, float32, as the constructor draws)."""
    layer = m.MoE(16, 48, 4, 1, 1.25, rng=seeded(seed), layers=layers)
    return {"names": [name for name, _ in layer.named_parameters()],
            "values": {name: p.data for name, p in layer.named_parameters()},
            "dtypes": sorted({str(p.dtype) for p in layer.parameters()})}
