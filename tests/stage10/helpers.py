"""Stage 10 helpers shared by the visible and the hidden suite (a helper exists once): made-up verse, the tiny
preset with fields replaced, a seeded model, the schedule by hand, reading a run's log, and the probes both suites
run."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from grader.harness import Mistake, Tol, randomise_parameters, raised, seeded, sibling

ACCUMULATED = Tol(1e-10, 1e-12, "float64; k micro-batch gradients added up against one batch: only the order of the "
                                "sums differs")
SAME_WEIGHTS = Tol(1e-8, 1e-11, "float64 models with the same weights; yours and the reference may sum in another "
                                "order")

SPEAKERS = ("ROMEO", "JULIET", "NURSE", "MERCUTIO")
LINES = ("But soft, what light through yonder window breaks?", "It is the east, and Juliet is the sun.",
         "O Romeo, Romeo, wherefore art thou Romeo?", "A plague o' both your houses!",
         "Good night, good night! parting is such sweet sorrow.", "What's in a name? that which we call a rose",
         "By any other name would smell as sweet.", "Thus with a kiss I die.")
# A quick run of the whole loop: one small block, a dozen steps, validation and checkpoints every 4 steps.
QUICK = {"context": 16, "layers": 1, "heads": 2, "width": 16, "batch_size": 4, "steps": 12, "warmup_steps": 2,
         "eval_every": 4, "eval_batches": 2, "checkpoint_every": 4, "log_every": 4}


def verse(seed: int, speeches: int) -> str:
    """Made-up "NAME:\\nverse" text: `speeches` speeches of one to three lines drawn from LINES (about 80 characters
    per speech), so that a model can learn something in a few steps."""
    rng = seeded(seed)
    parts = []
    for _ in range(speeches):
        lines = [LINES[i] for i in rng.integers(0, len(LINES), size=int(rng.integers(1, 4)))]
        parts.append(SPEAKERS[int(rng.integers(len(SPEAKERS)))] + ":\n" + "\n".join(lines))
    return "\n\n".join(parts) + "\n"


def config(m, overrides: dict):
    """The target's tiny preset with some fields replaced (betas may come as a list)."""
    return dataclasses.replace(m.PRESETS["tiny"], **{k: tuple(v) if k == "betas" else v for k, v in overrides.items()})


def build(m, fields: dict, seed: int):
    """A GPT of the target's gpt module whose weights are seeded float64 values chosen by sorted parameter name."""
    gpt = sibling(m, "gpt")
    model = gpt.GPT(gpt.GPTConfig(**fields), rng=seeded(seed))
    randomise_parameters(model, seed + 1)
    return model


def grads(model) -> dict:
    return {name: p.grad.copy() for name, p in model.named_parameters()}


def weights(model) -> dict:
    return {name: p.data.copy() for name, p in model.named_parameters()}


def micro_batches(x: list, y: list, k: int) -> list:
    """Rows of x and y cut into k equal micro-batches."""
    return list(zip(np.split(np.array(x), k), np.split(np.array(y), k)))


def run(m, directory: str, text: str, overrides: dict, **kwargs) -> dict:
    return m.train(config(m, overrides), directory, text=text, verbose=False, **kwargs)


def read_log(directory: str) -> dict:
    with open(Path(directory) / "log.csv", newline="") as file:
        rows = list(csv.reader(file))
    lines = (Path(directory) / "log.jsonl").read_text().splitlines()
    return {"header": rows[0], "rows": rows[1:], "jsonl": [json.loads(line) for line in lines]}


def schedule_by_hand(step: int, max_lr: float, min_lr: float, warmup: int, total: int) -> float:
    """docs/05-optim.md, section 7, written out again."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def accumulation_mistakes(k: int) -> tuple:
    """What a wrong accumulation looks like when its micro-batch gradients are judged against one big batch."""
    def ratio(g: dict, w: dict) -> float:
        return float(np.sum(g["grads"]["final_norm.weight"] * w["grads"]["final_norm.weight"])
                     / np.sum(w["grads"]["final_norm.weight"] ** 2))
    return (Mistake(f"the gradients are {k} times too large: divide each micro-batch loss by k before backward",
                    lambda g, w: abs(ratio(g, w) - k) < 0.2),
            Mistake("only the last micro-batch counts: zero the gradients once per step, before the micro-batches, "
                    "not before each", lambda g, w: abs(ratio(g, w) - 1.0 / k) < 0.2 or abs(ratio(g, w) - 1) > 0.2))


# ---------------------------------------------------------------- probes of both suites


def probe_split(m, text: str, val_fraction: float) -> dict:
    return raised(m.split_text, text, val_fraction)


def probe_prepare(m, text: str, val_fraction: float) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        info = m.prepare_tokens(text, directory, val_fraction=val_fraction)
        vocabulary = json.loads((Path(directory) / "tokenizer.json").read_text(encoding="utf-8"))
        train = np.array(m.read_tokens(Path(directory) / "train.bin"))
        val = np.array(m.read_tokens(Path(directory) / "val.bin"))
        return {"info": info, "vocabulary": vocabulary, "train": train, "val": val,
                "files": sorted(os.listdir(directory))}


def probe_accumulation(m, fields: dict, seed: int, x: list, y: list, k: int) -> dict:
    optim = sibling(m, "optim")
    out = {}
    for name, parts in (("micro", k), ("whole", 1)):
        model = build(m, fields, seed)
        optimizer = optim.AdamW(model.parameters(), lr=0.0)
        result = m.train_step(model, optimizer, micro_batches(x, y, parts), lr=0.0, clip=1e12)
        out[name] = {"loss": result["loss"], "grads": grads(model)}
    return out


def probe_validate(m, refused: dict, accepted: dict, field: str) -> dict:
    """TrainConfig.validate() of the tiny preset with `refused` fields (what it raised; the message must name `field`)
    and with `accepted` ones (what it returned, and whether that is the config itself, as documented)."""
    bad, good = config(m, refused), config(m, accepted)
    outcome = raised(good.validate)
    return {"refused": raised(bad.validate, mentions=[field]), "accepted": outcome,
            "returns_itself": "returned" in outcome and good.validate() is good}


def validation_expected(field: str) -> dict:
    """What probe_validate must give: the refused config names `field`; the accepted one is returned as it is."""
    return {"refused": {"raised": "ValueError", "mentions": [field]}, "accepted": {"returned": "<TrainConfig object>"},
            "returns_itself": True}


def probe_loop_schedule(m, text: str, overrides: dict) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        summary = run(m, directory, text, overrides)
        log = read_log(directory)
    return {"lrs": summary["lrs"], "logged": [float(row[3]) for row in log["rows"] if row[3] != ""]}


def probe_resume(m, text: str, overrides: dict, stop: int) -> dict:
    with tempfile.TemporaryDirectory() as whole, tempfile.TemporaryDirectory() as halves:
        full = run(m, whole, text, overrides)
        first = run(m, halves, text, overrides, stop_after=stop)
        second = run(m, halves, text, overrides, resume=True)
        with np.load(Path(whole) / "model.npz") as a, np.load(Path(halves) / "model.npz") as b:
            same = sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
        return {"full": full["losses"], "first": first["losses"], "second": second["losses"],
                "full_val": full["val_losses"], "resumed_val": first["val_losses"] + second["val_losses"],
                "stops": [first["step"], second["start_step"], second["step"]], "same_weights": same,
                "log_steps": [int(row[0]) for row in read_log(halves)["rows"]]}
