"""Stage 09 helpers shared by the visible and the hidden suite (a helper exists once): the tolerances, a model
builder, the probes both suites run, the hand count of parameters, a NumPy cross-entropy, and the judges of
gradients and causality."""
from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np

from grader.harness import GRADCHECK, Mistake, Tol, assert_close, assert_true, central_difference, \
    randomise_parameters, raised, seeded, sibling

COMPOSED = Tol(1e-9, 1e-11, "float64; the model and the composition of its own submodules round differently")
SAME_MODEL = Tol(1e-8, 1e-10, "float64; your model and the reference's with the same weights, summed in another order")
FLOAT32 = Tol(2e-4, 2e-5, "float32 models with the same weights; reductions in another order differ in the last digits")
GRADIENTS = Tol(1e-7, 1e-9, "float64 gradients of the same weights, and central differences (eps 1e-6) of two "
                            "forwards that agree to ~1e-15: their differences agree to ~1e-9")
TINY = {"vocab_size": 7, "context": 6, "layers": 2, "heads": 2, "width": 8}


def build(m, fields: dict, seed: int, dtype=np.float64):
    """GPT(GPTConfig(**fields)) with randomised weights of `dtype` (None: keep the constructor's float32 weights)."""
    model = m.GPT(m.GPTConfig(**fields), rng=seeded(seed))
    if dtype is not None:
        randomise_parameters(model, seed + 1, dtype)
    return model


def model_of(m, fields: dict, seed: int):
    """The target's own GPT (stage 09, found beside module m) with seeded float64 weights by sorted name, spread 0.5,
    in eval mode: target and reference hold the same model (stages 14, 15 and 16 build on it)."""
    gpt = sibling(m, "gpt")
    model = gpt.GPT(gpt.GPTConfig(**fields), rng=seeded(seed))
    randomise_parameters(model, seed + 1, np.float64, spread=0.5)
    model.eval()
    return model


def numpy_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """The mean of -log softmax(logits)[target] over every position, in NumPy (test-side)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-np.take_along_axis(log_probs, targets[..., None], axis=-1).mean())


def parameter_count(fields: dict) -> int:
    """The parameter count of a GPTConfig, by hand (the formula of docs/09-gpt.md, section 4)."""
    config = {"context": 64, "layers": 4, "heads": 4, "kv_heads": None, "width": 128, "norm": "rms",
              "feed_forward": "swiglu", "position": "rotary", "tie_embeddings": True, **fields}
    V, C, L, H = config["vocab_size"], config["width"], config["layers"], config["heads"]
    kv_heads = config["kv_heads"] or H
    head_dim = C // H
    norm = 2 * C if config["norm"] == "layer" else C  # weight (and bias)
    attention = C * H * head_dim + 2 * C * kv_heads * head_dim + H * head_dim * C  # query, key, value, output
    if config["feed_forward"] == "swiglu":
        feed_forward = 3 * C * 8 * math.ceil(C / 3)
    else:
        feed_forward = 2 * C * 4 * C + 4 * C + C  # up and down, with biases
    total = V * C + L * (2 * norm + attention + feed_forward) + norm
    total += config["context"] * C if config["position"] == "learned" else 0
    total += 0 if config["tie_embeddings"] else C * V
    return total


# ---------------------------------------------------------------- probes of both suites


def probe_structure(m, fields: dict, seed: int) -> dict:
    model = m.GPT(m.GPTConfig(**fields), rng=seeded(seed))
    return {"names": [name for name, _ in model.named_parameters()],
            "shapes": {name: list(p.shape) for name, p in model.named_parameters()},
            "dtypes": sorted({str(p.dtype) for p in model.parameters()}),
            "head": model.head is None, "position_embedding": model.position_embedding is None,
            "config": model.config.to_dict(), "blocks": len(model.blocks),
            "rotary": [bool(block.attention.rotary) for block in model.blocks],
            "rope_positions": [int(block.attention.rope_cos.shape[0]) for block in model.blocks
                               if block.attention.rotary]}


def probe_initial_loss(m, fields: dict, seed: int, ids: np.ndarray, targets: np.ndarray) -> dict:
    logits, loss = m.GPT(m.GPTConfig(**fields), rng=seeded(seed))(ids, targets)
    return {"loss": loss.item(), "logits_std": float(logits.data.std()), "dtype": str(logits.dtype)}


def probe_counts(m, fields: dict, seed: int) -> dict:
    model = m.GPT(m.GPTConfig(**fields), rng=seeded(seed))
    return {"num_parameters": model.num_parameters(), "flops_per_token": model.flops_per_token(),
            "types": [type(model.num_parameters()).__name__, type(model.flops_per_token()).__name__],
            "state_size": int(sum(v.size for v in model.state_dict().values()))}


def probe_gradients(m, fields: dict, seed: int, ids: np.ndarray, targets: np.ndarray, names: list, rows: int) -> dict:
    """Backward of the loss, and central differences of the loss for the first `rows` rows of each named parameter."""
    model = build(m, fields, seed)
    model.zero_grad()
    model(ids, targets)[1].backward()
    parameters = dict(model.named_parameters())
    analytic = {name: parameters[name].grad[:rows].copy() for name in names}

    def loss() -> float:
        return model(ids, targets)[1].item()

    numeric = {name: central_difference(loss, parameters[name].data[:rows]) for name in names}  # rows: a view
    return {"analytic": analytic, "numeric": numeric}


def judge_gradients(got: dict, want: dict, what: str) -> None:
    """Your backward against central differences of the REFERENCE's forward with the same weights, then everything
    against the reference's. (Against your own forward alone, a loss that ignores the weights would pass.)"""
    for name, numeric in want["numeric"].items():
        own = got["numeric"][name]
        assert_close(got["numeric"][name], numeric, GRADIENTS, f"{what}: central differences of YOUR loss in {name} "
                     "(first rows) vs the reference's: your forward pass computes another loss of these weights")
        assert_close(got["analytic"][name], numeric, GRADCHECK, f"{what}: d loss / d {name} (first rows) vs central "
                     "differences of the reference's forward (the same weights)", mistakes=(
                         Mistake("no gradient reaches this parameter (is it used in forward, through Tensor ops?)",
                                 lambda g, w: not np.any(g) and np.any(w)),
                         Mistake("your backward disagrees with central differences of your own forward too: a "
                                 "parameter used outside the Tensor ops (through .data or a copy) gets no gradient "
                                 "from that use", lambda g, w: not np.allclose(g, own, rtol=1e-5, atol=1e-7))))
    assert_close(got, want, GRADIENTS, f"{what}: gradients and central differences vs the reference's")


def probe_tied_vs_untied(m, fields: dict, seed: int, ids: np.ndarray, targets: np.ndarray) -> dict:
    """A tied model, and an untied twin with the same weights whose head is a copy of the embedding's transpose."""
    tied = build(m, {**fields, "tie_embeddings": True}, seed)
    untied = m.GPT(m.GPTConfig(**{**fields, "tie_embeddings": False}), rng=seeded(seed))
    state = tied.state_dict()
    untied_parameters = dict(untied.named_parameters())
    for name, value in state.items():
        untied_parameters[name].data = value.copy()
    untied.head.weight.data = state["token_embedding.weight"].T.copy()  # (C, V)
    results = {}
    for label, model in (("tied", tied), ("untied", untied)):
        model.zero_grad()
        logits, loss = model(ids, targets)
        loss.backward()
        results[label] = {"logits": logits.data, "embedding_grad": model.token_embedding.weight.grad}
    results["untied"]["head_grad"] = untied.head.weight.grad.T  # (V, C)
    return results


TIED_MISTAKES = (
    Mistake("only the lookup's gradient reaches the tied embedding: the head multiplies a copy (e.g. "
            "Tensor(weight.data.T)) instead of weight.transpose(1, 0)",
            lambda got, want: np.allclose(got["tied"]["embedding_grad"], got["untied"]["embedding_grad"])),)


def probe_causality(m, fields: dict, seed: int, ids: np.ndarray, replacements: np.ndarray) -> dict:
    """Logits of ids, and of ids with every token after position t replaced, for each t."""
    model = build(m, fields, seed)
    changed = []
    for t in range(ids.shape[1]):
        edited = ids.copy()
        edited[:, t + 1:] = replacements[:, t + 1:]
        changed.append(model(edited)[0].data)
    return {"logits": model(ids)[0].data, "changed": changed}


def judge_causality(got: dict, ids: np.ndarray, replacements: np.ndarray, what: str) -> None:
    logits, T = got["logits"], ids.shape[1]
    for t in range(T):
        assert_close(got["changed"][t][:, :t + 1], logits[:, :t + 1], Tol(0.0, 1e-12, "float64; the earlier "
                     "positions' logits must not depend on later tokens at all"),
                     f"{what}: logits at positions 0..{t} after changing the tokens after position {t}")
    assert_true(not np.allclose(got["changed"][0][:, -1], logits[:, -1]),
                f"{what}: changing the tokens after position 0 should change the logits at the last position")


def probe_load_other_weights(m, fields: dict, other: dict, seed: int, mentions: list) -> dict:
    """A checkpoint whose config says `fields` but whose weights come from a model built with `other`."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "mixed.npz")
        m.GPT(m.GPTConfig(**other), rng=seeded(seed)).save(path)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        arrays["config"] = np.array(json.dumps(m.GPTConfig(**fields).to_dict()))
        with open(path, "wb") as file:
            np.savez(file, **arrays)
        shapes = {name: list(value.shape) for name, value in arrays.items() if name != "config"}
        return {"result": raised(m.GPT.load, path, mentions=mentions), "shapes": shapes}


def names_a_mismatch(message: str, stored: dict, wanted: dict) -> bool:
    """True when the message names a key whose shape differs, with both shapes (as tuples or lists)."""
    for name, shape in stored.items():
        if name in wanted and wanted[name] != shape and name in message:
            forms = [(str(tuple(shape)), str(tuple(wanted[name]))), (str(shape), str(wanted[name]))]
            if any(a in message and b in message for a, b in forms):
                return True
    return False
