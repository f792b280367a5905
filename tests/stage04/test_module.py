"""Stage 04 (a neural language model), visible suite: the Module system.

Each probe builds a small model out of your `Module`, `Linear` and `Embedding` and reports plain data; each test
compares it with the reference and also checks names, orders and flags written out by hand below, so that it would
catch a wrong reference too. Conventions: the docstrings of exercises/nn.py and docs/04-nn.md, "Modules".
"""
from __future__ import annotations


import numpy as np
import pytest

from grader.harness import EXACT, F32, Mistake, assert_close, assert_true, raised, seeded, sibling
from tests.stage04.helpers import grad_or_zeros


def build_toy(m, seed: int):
    """An embedding, a list of two residual blocks (each a gain vector and a Linear) and a bias-free head.

    Also holds a number, an np.ndarray buffer and a Tensor without requires_grad: none of them is a parameter.
    """
    T = sibling(m, "tensor")
    rng = np.random.default_rng(seed)

    class Block(m.Module):
        def __init__(self) -> None:
            self.gain = T.Tensor(np.ones(3), requires_grad=True)
            self.proj = m.Linear(3, 3, rng=rng)

        def forward(self, h):
            return self.proj(h * self.gain).tanh() + h

    class Toy(m.Module):
        def __init__(self) -> None:
            self.embed = m.Embedding(5, 3, rng=rng)
            self.scale = 2.0  # a number
            self.mask = np.ones(3)  # a constant buffer
            self.frozen = T.Tensor(np.ones(3))  # a Tensor that does not require grad
            self.blocks = [Block(), Block()]
            self.head = m.Linear(3, 5, bias=False, rng=rng)

        def forward(self, ids):
            h = self.embed(ids) * self.frozen  # (B, T, 3)
            for block in self.blocks:
                h = block(h)
            return self.head(h)  # (B, T, 5)

    return Toy()


TOY_NAMES = ["embed.weight", "blocks.0.gain", "blocks.0.proj.weight", "blocks.0.proj.bias",
             "blocks.1.gain", "blocks.1.proj.weight", "blocks.1.proj.bias", "head.weight"]
TOY_SHAPES = [[5, 3], [3], [3, 3], [3], [3], [3, 3], [3], [3, 5]]
IDS = np.array([[0, 4, 2], [1, 1, 3]])


def _toy_modules(toy) -> list:
    """Every module of the toy, the root first (for the training flags)."""
    return [toy, toy.embed, toy.blocks[0], toy.blocks[0].proj, toy.blocks[1], toy.blocks[1].proj, toy.head]


# ---------------------------------------------------------------- parameters and their names


def probe_named_parameters(m, seed: int) -> dict:
    toy = build_toy(m, seed)
    named = toy.named_parameters()
    params = toy.parameters()
    expected_objects = [toy.embed.weight, toy.blocks[0].gain, toy.blocks[0].proj.weight, toy.blocks[0].proj.bias,
                        toy.blocks[1].gain, toy.blocks[1].proj.weight, toy.blocks[1].proj.bias, toy.head.weight]
    return {"names": [name for name, _ in named], "shapes": [list(p.shape) for _, p in named],
            "same_objects_as_named": [p is q for p, (_, q) in zip(params, named)] + [len(params) == len(named)],
            "are_the_attributes": [p is q for p, q in zip(params, expected_objects)]}


@pytest.mark.concept("named-parameters")
def test_named_parameters_walk_nested_modules_and_lists_in_order(check):
    got = check(probe_named_parameters, seed=1, tol=EXACT, what="named parameters of the toy model", mistakes=(
        Mistake("the number, the np.ndarray buffer or the Tensor without requires_grad was taken as a parameter",
                lambda got, want: any(n in ("scale", "mask", "frozen") for n in got["names"])),
        Mistake("the list of blocks was skipped: recurse into list/tuple items, naming them blocks.0, blocks.1",
                lambda got, want: not any(n.startswith("blocks") for n in got["names"])),
    ))
    # attribute order embed, (scale, mask, frozen skipped), blocks[0], blocks[1], head; depth first inside each
    assert_close(got["names"], TOY_NAMES, EXACT, "names, in attribute insertion order")
    assert_close(got["shapes"], TOY_SHAPES, EXACT, "shapes of the named parameters")
    assert_true(all(got["same_objects_as_named"]), "parameters() must return the Tensors of named_parameters(), "
                                                   f"in the same order: {got['same_objects_as_named']}")
    assert_true(all(got["are_the_attributes"]), "parameters() must be the attribute Tensors themselves (not copies): "
                                                f"{got['are_the_attributes']}")


# ---------------------------------------------------------------- zero_grad


def probe_zero_grad(m, seed: int, ids: np.ndarray, weights: np.ndarray) -> dict:
    toy = build_toy(m, seed)

    def backward() -> list:
        (toy(ids) * weights).sum().backward()
        return [grad_or_zeros(p).copy() for p in toy.parameters()]

    first = backward()
    toy.zero_grad()
    cleared = [p.grad is None or not np.any(p.grad) for p in toy.parameters()]
    second = backward()
    return {"first": first, "cleared": cleared, "second": second}


@pytest.mark.concept("zero-grad")
def test_zero_grad_clears_every_parameter_so_the_next_backward_starts_afresh(check):
    weights = seeded(401).standard_normal((2, 3, 5))
    got = check(probe_zero_grad, seed=2, ids=IDS, weights=weights, tol=F32, what="gradients before/after zero_grad")
    assert_true(all(g is not None and np.any(g) for g in got["first"]),
                "every parameter of the toy model gets a non-zero gradient from its first backward")
    assert_true(all(got["cleared"]), f"after zero_grad every gradient must be None (or zeros), "
                                     f"parameter by parameter: {got['cleared']}")
    assert_close(got["second"], got["first"], F32, "gradients of the backward after zero_grad", mistakes=(
        Mistake("the second gradient is twice the first: zero_grad did not reach these parameters",
                lambda got, want: any(np.allclose(g, 2 * w) for g, w in zip(got, want))),))


# ---------------------------------------------------------------- train / eval


def probe_train_eval(m, seed: int) -> dict:
    toy = build_toy(m, seed)
    flags = {"initial": [module.training for module in _toy_modules(toy)]}
    returned = toy.eval()
    flags["after eval()"] = [module.training for module in _toy_modules(toy)]
    flags["eval returns self"] = returned is toy
    returned = toy.train()
    flags["after train()"] = [module.training for module in _toy_modules(toy)]
    flags["train returns self"] = returned is toy
    toy.train(False)
    flags["after train(False)"] = [module.training for module in _toy_modules(toy)]
    return flags


@pytest.mark.concept("train-eval")
def test_train_and_eval_reach_every_submodule_and_return_self(check):
    got = check(probe_train_eval, seed=3, tol=EXACT, what="training flags of the 7 modules", mistakes=(
        Mistake("only the root changed: set training on every submodule, also those inside lists",
                lambda got, want: got["after eval()"][0] is False and True in got["after eval()"]),))
    assert_close(got, {"initial": [True] * 7, "after eval()": [False] * 7, "eval returns self": True,
                       "after train()": [True] * 7, "train returns self": True, "after train(False)": [False] * 7},
                 EXACT, "training flags (a new module trains; eval/train reach all 7 modules)")


# ---------------------------------------------------------------- state_dict


def probe_state_dict(m, seed: int) -> dict:
    toy = build_toy(m, seed)
    state = toy.state_dict()
    saved = {name: array.copy() for name, array in state.items()}
    matches = [bool(np.array_equal(saved.get(name), p.data)) for name, p in toy.named_parameters()]
    state["head.weight"] += 1.0  # editing the state must not reach the model
    head_unchanged = bool(np.array_equal(toy.head.weight.data, saved["head.weight"]))
    toy.blocks[0].proj.weight.data += 1.0  # training the model must not reach the state
    state_unchanged = bool(np.array_equal(state["blocks.0.proj.weight"], saved["blocks.0.proj.weight"]))
    return {"keys": list(state), "values": saved, "dtypes": [str(a.dtype) for a in saved.values()],
            "matches parameters": matches,
            "head unchanged": head_unchanged, "state unchanged": state_unchanged}


@pytest.mark.concept("state-dict")
def test_state_dict_holds_copies_of_every_parameter_by_name(check):
    got = check(probe_state_dict, seed=4, tol=EXACT, what="state_dict of the toy model")
    assert_close(got["keys"], TOY_NAMES, EXACT, "state_dict keys (the named_parameters names, in order)")
    assert_close(got["dtypes"], ["float32"] * 8, EXACT, "dtypes of the saved arrays")
    assert_true(all(got["matches parameters"]), f"each saved array must equal its parameter's data: "
                                                f"{got['matches parameters']}")
    assert_true(got["head unchanged"], "editing state['head.weight'] changed the model: state_dict must hold copies")
    assert_true(got["state unchanged"], "changing a parameter changed a saved state: state_dict must hold copies")


def probe_load_round_trip(m, seed_a: int, seed_b: int, ids: np.ndarray) -> dict:
    source, model = build_toy(m, seed_a), build_toy(m, seed_b)
    before = model(ids).data.copy()
    params_before = model.parameters()
    model.load_state_dict(source.state_dict())
    return {"before": before, "after": model(ids).data.copy(), "source": source(ids).data.copy(),
            "same tensors": [p is q for p, q in zip(model.parameters(), params_before)],
            "dtypes": [str(p.dtype) for p in model.parameters()]}


@pytest.mark.concept("state-dict")
def test_load_state_dict_round_trip_reproduces_the_model(check):
    got = check(probe_load_round_trip, seed_a=5, seed_b=6, ids=IDS, tol=F32, what="outputs before/after loading")
    assert_true(not np.allclose(got["before"], got["source"]), "two seeds should make two different toy models")
    assert_close(got["after"], got["source"], EXACT, "output of the loaded model vs the model it was saved from")
    assert_true(all(got["same tensors"]), "load_state_dict must copy into the existing parameter Tensors (an "
                                          "optimizer holds them), not replace them")
    assert_close(got["dtypes"], ["float32"] * 8, EXACT, "parameter dtypes after loading")


def probe_load_errors(m, seed: int) -> dict:
    toy = build_toy(m, seed)
    missing = toy.state_dict()
    del missing["blocks.1.proj.bias"]
    unexpected = toy.state_dict()
    unexpected["extra.weight"] = np.zeros(2, dtype=np.float32)
    wrong_shape = toy.state_dict()
    wrong_shape["head.weight"] = np.zeros((3, 4), dtype=np.float32)
    # each message names the offending key (and, for a shape, both shapes): the docstring's promise
    return {"missing": raised(toy.load_state_dict, missing, mentions=LOAD_ERRORS["missing"][1]),
            "unexpected": raised(toy.load_state_dict, unexpected, mentions=LOAD_ERRORS["unexpected"][1]),
            "wrong shape": raised(toy.load_state_dict, wrong_shape, mentions=LOAD_ERRORS["wrong shape"][1])}


LOAD_ERRORS = {"missing": ("KeyError", ["blocks.1.proj.bias"]), "unexpected": ("KeyError", ["extra.weight"]),
               "wrong shape": ("ValueError", ["head.weight", "(3, 4)", "(3, 5)"])}


@pytest.mark.concept("state-dict")
def test_load_state_dict_errors_name_the_key(check):
    got = check(probe_load_errors, seed=7, tol=EXACT, what="load_state_dict")
    for case, (error, words) in LOAD_ERRORS.items():
        assert_close(got[case], {"raised": error, "mentions": words}, EXACT, f"load_state_dict with a {case} key")
