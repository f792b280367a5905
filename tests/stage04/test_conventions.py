"""Stage 04 (a neural language model), visible suite: the conventions of the docstrings that the other tests' inputs
do not expose (a mistake there would pass them and fail the hidden suite). Each test's input is chosen so that one
plausible mistake gives a different answer; tests/mutants/stage04.toml lists those mistakes.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, assert_close, raised, seeded

# ---------------------------------------------------------------- modules


def build_shared(m, seed: int):
    """A first Linear, a tuple of two Linears, and a last Linear that shares the first one's weight."""
    rng = np.random.default_rng(seed)

    class Shared(m.Module):
        def __init__(self) -> None:
            self.first = m.Linear(3, 3, rng=rng)
            self.pair = (m.Linear(3, 2, rng=rng), m.Linear(2, 3, bias=False, rng=rng))  # a tuple, not a list
            self.last = m.Linear(3, 3, rng=rng)
            self.last.weight = self.first.weight  # tied: one parameter reached by two names

        def forward(self, x):
            return self.last(self.pair[1](self.pair[0](self.first(x))))

    return Shared()


def probe_shared_names(m, seed: int) -> dict:
    model = build_shared(m, seed)
    return {"names": [name for name, _ in model.named_parameters()], "count": len(model.parameters())}


@pytest.mark.concept("named-parameters")
def test_tuples_are_walked_and_a_shared_weight_is_listed_once(check):
    got = check(probe_shared_names, seed=401, tol=EXACT, what="named_parameters of a model with a tuple and a tie")
    names = ["first.weight", "first.bias", "pair.0.weight", "pair.0.bias", "pair.1.weight", "last.bias"]
    assert_close(got, {"names": names, "count": 6}, EXACT,
                 "names in assignment order: the tuple's items as pair.0 and pair.1; the tied weight once, under the "
                 "first name it is reached by (last.weight is first.weight)", mistakes=(
                     Mistake("a weight shared by two layers was listed twice: keep it once (compare by id())",
                             lambda got, want: "last.weight" in got["names"]),
                     Mistake("the items of a tuple attribute were skipped: walk tuples as lists",
                             lambda got, want: "pair.0.weight" not in got["names"])))


def probe_load_contract(m, seed: int) -> dict:
    model = build_shared(m, seed)
    state = {name: np.asarray(array, dtype=np.float64) + 1.0 for name, array in model.state_dict().items()}
    before = {name: parameter.data for name, parameter in model.named_parameters()}
    values = {name: array.copy() for name, array in before.items()}
    two_missing = {name: array for name, array in state.items() if name not in ("first.bias", "last.bias")}
    bad_last = dict(state, **{"last.bias": np.zeros(4)})  # every other array is fine and comes first
    result = {"two missing": raised(model.load_state_dict, two_missing, mentions=["first.bias", "last.bias"]),
              "bad shape last": raised(model.load_state_dict, bad_last, mentions=["last.bias"])}
    result["unchanged after the error"] = [bool(np.array_equal(parameter.data, values[name]))
                                           for name, parameter in model.named_parameters()]
    model.load_state_dict(state)  # a float64 state into a float32 model
    result["dtypes"] = [str(parameter.dtype) for parameter in model.parameters()]
    result["same arrays"] = [parameter.data is before[name] for name, parameter in model.named_parameters()]
    result["loaded"] = [parameter.data for parameter in model.parameters()]
    return result


@pytest.mark.concept("state-dict")
def test_load_state_dict_checks_everything_first_and_writes_in_place(check):
    got = check(probe_load_contract, seed=402, tol=EXACT, what="load_state_dict", mistakes=(
        Mistake("parameters were copied while checking: check every key and shape first, then copy",
                lambda got, want: not all(got["unchanged after the error"])),
        Mistake("the parameter's array was replaced (parameter.data = array): write into it, parameter.data[...] = "
                "array, which keeps its dtype and the array an optimizer holds",
                lambda got, want: "float64" in got["dtypes"] or not all(got["same arrays"]))))
    assert_close(got["two missing"], {"raised": "KeyError", "mentions": ["first.bias", "last.bias"]}, EXACT,
                 "a state without first.bias and last.bias: ONE KeyError listing both missing names")
    assert_close(got["unchanged after the error"], [True] * 6, EXACT,
                 "every parameter after a load that failed on the last key's shape (the model must be unchanged)")
    assert_close(got["dtypes"], ["float32"] * 6, EXACT, "dtypes after loading a float64 state into a float32 model")
    assert_close(got["same arrays"], [True] * 6, EXACT, "each parameter keeps its array (written in place)")


# ---------------------------------------------------------------- layers


def probe_linear_vector(m, seed: int, x: np.ndarray) -> dict:
    layer = m.Linear(4, 3, rng=np.random.default_rng(seed), dtype=np.float64)
    y = layer(x)
    return {"shape": list(y.shape), "y": y.data, "by hand": x @ layer.weight.data + layer.bias.data}


@pytest.mark.concept("linear")
def test_linear_of_a_vector_gives_a_vector(check):
    got = check(probe_linear_vector, seed=403, x=seeded(404).standard_normal(4), what="Linear(4, 3) of a (4,) vector")
    assert_close(got["shape"], [3], EXACT, "Linear(4, 3) of a 1-D input of shape (4,): shape (3,)")
    assert_close(got["y"], got["by hand"], F64, "x @ weight + bias for one vector")


def probe_embedding_outside(m, seed: int, ids: list) -> dict:
    table = m.Embedding(5, 2, rng=np.random.default_rng(seed))
    return {str(i): raised(table, np.array([[0, i]]), mentions=[str(i)]) for i in ids}


@pytest.mark.concept("embedding")
def test_embedding_rejects_ids_outside_the_table_with_index_error(check):
    # 5 rows: -1 would wrap around to row 4 and -5 to row 0; 5 is one past the end
    got = check(probe_embedding_outside, seed=405, ids=[-1, -5, 5], tol=EXACT, what="Embedding(5, 2) of bad ids")
    for i in (-1, -5, 5):
        assert_close(got[str(i)], {"raised": "IndexError", "mentions": [str(i)]}, EXACT,
                     f"Embedding(5, 2) of id {i}: IndexError naming it (a negative id must not wrap around)")


# ---------------------------------------------------------------- cross-entropy


def probe_cross_entropy_errors(m, logits: np.ndarray, cases: dict) -> dict:
    T = m.Tensor(logits, requires_grad=True, dtype=np.float64)
    return {name: raised(m.cross_entropy, T, np.array(targets), mentions=mentions)
            for name, (targets, mentions) in cases.items()}


@pytest.mark.concept("ignore-index")
def test_cross_entropy_rejects_bad_targets_and_shapes(check):
    logits = seeded(406).standard_normal((2, 3, 5))  # (B, T, V) with V = 5
    cases = {"target -1 (not the ignore_index -100)": ([[0, -1, 2], [1, 1, 1]], ["-1"]),
             "target 5 = V": ([[0, 1, 2], [5, 1, 1]], ["5"]),
             "flattened targets (6,)": ([0, 1, 2, 3, 4, 0], ["(6,)", "(2, 3)"]),
             "transposed targets (3, 2)": ([[0, 1], [2, 3], [4, 0]], ["(3, 2)", "(2, 3)"])}
    got = check(probe_cross_entropy_errors, logits=logits, cases=cases, tol=EXACT, what="cross_entropy")
    for name, (_, mentions) in cases.items():
        assert_close(got[name], {"raised": "ValueError", "mentions": mentions}, EXACT,
                     f"cross_entropy of (2, 3, 5) logits with {name}: ValueError naming it (targets must have the "
                     f"shape logits.shape[:-1], and a negative target other than ignore_index must not wrap around)")
