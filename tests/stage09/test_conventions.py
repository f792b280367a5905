"""Stage 09 (the GPT), visible suite: the conventions of the docstrings that the other tests' inputs do not expose
(a mistake there would pass them and fail the hidden suite). Each test's input is chosen so that one plausible mistake
gives a different answer; tests/mutants/stage09.toml lists those mistakes.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, assert_close, raised, randomise_parameters, seeded
from tests.stage09.helpers import COMPOSED, TINY

# ---------------------------------------------------------------- dropout


def probe_dropout_by_hand(m, fields: dict, seed: int, mask_seed: int, ids: np.ndarray) -> dict:
    """A GPT with dropout, in training mode: which generator its dropouts hold, its logits, and the same forward
    composed by hand from its own submodules, each pass with every dropout's generator set to one fresh seeded one."""
    rng = seeded(seed)
    model = m.GPT(m.GPTConfig(**fields), rng=rng)
    shared = [model.dropout.rng is rng] + [block.dropout.rng is rng for block in model.blocks]
    randomise_parameters(model, seed + 1)

    def reseed() -> None:
        generator = seeded(mask_seed)
        for dropout in [model.dropout] + [block.dropout for block in model.blocks]:
            dropout.rng = generator

    reseed()
    logits = model(ids)[0].data
    reseed()
    x = model.dropout(model.token_embedding(ids))  # (B, T, C)
    for layer, block in enumerate(model.blocks):
        x = block(x, None, layer)
    by_hand = model.final_norm(x) @ model.token_embedding.weight.transpose(1, 0)
    return {"the rng passed in": shared, "logits": logits, "by hand": by_hand.data}


@pytest.mark.concept("dropout")
def test_dropout_follows_the_embeddings_and_shares_the_models_generator(check):
    fields = {**TINY, "dropout": 0.5}
    ids = seeded(951).integers(0, 7, (2, 6))
    embeddings = Mistake("no dropout after the embeddings: x = dropout(token_embedding(ids)) comes before the blocks",
                         lambda got, want: not np.allclose(got["logits"], got["by hand"]))
    got = check(probe_dropout_by_hand, fields=fields, seed=952, mask_seed=953, ids=ids, tol=COMPOSED,
                what="GPT(dropout=0.5) while training", mistakes=(embeddings,))
    assert_close(got["the rng passed in"], [True, True, True], EXACT,
                 "[model.dropout.rng, blocks[0].dropout.rng, blocks[1].dropout.rng] is the rng given to GPT (the "
                 "docstring: Dropout(config.dropout) sharing rng, so one seed fixes every mask)")
    assert_close(got["logits"], got["by hand"], COMPOSED,
                 "the logits vs dropout(embedding) -> blocks -> final norm -> tied head, from the model's own parts",
                 mistakes=(embeddings,))


# ---------------------------------------------------------------- saving and loading


class _DiskFull(OSError):
    pass


def probe_save_interrupted(m, fields: dict, seed: int, ids: np.ndarray) -> dict:
    """Save a model, then save another to the same path with np.savez failing half-way: the first must survive."""
    first, second = m.GPT(m.GPTConfig(**fields), rng=seeded(seed)), m.GPT(m.GPTConfig(**fields), rng=seeded(seed + 1))
    writers = {"savez": np.savez, "savez_compressed": np.savez_compressed}

    def half_then_fail(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):  # a path: what np.savez would have opened
            with open(file, "wb") as opened:
                opened.write(b"PK\x03\x04 half a checkpoint")
        else:
            file.write(b"PK\x03\x04 half a checkpoint")
        raise _DiskFull("no space left on device (simulated)")

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        first.save(path)
        for name in writers:  # whichever NumPy writer save uses fails half-way
            setattr(np, name, half_then_fail)
        try:
            interrupted = raised(second.save, path)
        finally:
            for name, writer in writers.items():
                setattr(np, name, writer)
        return {"interrupted": interrupted.get("raised"),
                "at path": raised(lambda: m.GPT.load(path)(ids)[0].data), "first": first(ids)[0].data}


@pytest.mark.concept("save-load")
def test_a_save_that_fails_half_way_leaves_the_old_checkpoint(check):
    # save writes to path + ".tmp" and renames it: a crash before the rename leaves the previous file whole.
    ids = seeded(954).integers(0, 7, (1, 4))
    half = Mistake("save wrote straight to path: write to path + '.tmp' and os.replace it onto path, so a crash "
                   "never leaves half a checkpoint", lambda got, want: "raised" in got["at path"])
    got = check(probe_save_interrupted, fields=dict(TINY), seed=955, ids=ids, tol=EXACT,
                what="a save interrupted by a full disk", mistakes=(half,))
    assert_close(got, dict(got, **{"at path": {"returned": got["first"]}}), EXACT,
                 "the checkpoint at path after a second save failed half-way (the first model, loadable)",
                 mistakes=(half,))


def probe_load_without_config(m, fields: dict, seed: int) -> dict:
    model = m.GPT(m.GPTConfig(**fields), rng=seeded(seed))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "weights.npz")
        with open(path, "wb") as file:
            np.savez(file, **model.state_dict())  # the weights alone, no "config"
        return raised(m.GPT.load, path, mentions=["config"])


@pytest.mark.concept("load-errors")
def test_a_file_without_a_config_raises_value_error_saying_so(check):
    got = check(probe_load_without_config, fields=dict(TINY), seed=956, tol=EXACT,
                what="GPT.load of an .npz of weights without 'config'")
    assert_close(got, {"raised": "ValueError", "mentions": ["config"]}, EXACT,
                 "GPT.load of a file that has no 'config' entry (not a KeyError from the archive)")
