"""The figures of docs/figures/ and the explorers' data, made by the reference (solutions/), never drawn by hand.

Each figure is a `Figure`: `compute()` returns its source data (plain JSON: the inputs, seeds and numbers it plots),
`draw(data)` turns that data into a matplotlib figure. `python -m grader figures` writes, for every figure,
docs/figures/<name>.png and docs/figures/<name>.json (the data, plus the PNG's sha256, so a PNG that was not drawn
from the data beside it is caught); `stale()` recomputes the data and lists every figure whose stored data differs.

Two kinds of source:
  - cheap: the reference on seeded inputs (a graph of Values, a broadcast, optimizer paths, ...), recomputed by the
    test in seconds;
  - the trained model: docs/figures/model/ holds one finished cpu-small run (model.npz, 3.2 MB; tokenizer.json;
    log.json, the loss curves, with the model's sha256). Training it takes minutes, so nothing retrains it on its own:
    `python -m grader figures --run DIR` adopts a run made by `python -m solutions.train --preset cpu-small --out DIR`.
    What is computed from the model (attention weights, next-token distributions) is recomputed from that committed
    checkpoint; every such data file records the checkpoint's sha256, and must match it.
The explorers' data (docs/explorers/data/*.js) is model data too: JSON assigned to a global, because a page opened
from disk (file://) cannot fetch() a JSON file.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import manifest
from ..manifest import ROOT

FIGURES = ROOT / "docs" / "figures"
MODEL_DIR = FIGURES / "model"  # the committed trained run
EXPLORER_DATA = ROOT / "docs" / "explorers" / "data"
MADE_BY = "python -m grader figures (grader/instructor/figures.py)"
DPI = 120

# Stored numbers keep 6 significant digits; recomputing may differ in the last digits (BLAS sums in another order,
# float32 forward passes), so data compares within RTOL / ATOL. Attention weights are stored with 4 decimals: another
# BLAS can move a weight across a rounding boundary, by 1e-4 (WEIGHTS_ATOL).
DIGITS = 6
RTOL, ATOL = 1e-4, 1e-6
WEIGHTS_ATOL = 2e-4

# A real line of the validation text (Romeo and Juliet lies in the last 10% of the corpus), for the attention maps.
ATTENTION_LINE = "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?"
# Prompts whose next-token distributions the sampling explorer shows (the first is the stage-11 figure's).
PROMPTS = [
    "ROMEO:\nBut, soft! what light through yonder ",
    "JULIET:\nO Romeo, Romeo! wherefore art thou ",
    "First Witch:\nWhen shall we three meet ag",
    "LADY MACBETH:\nThe raven himself is hoar",
    "MACBETH:\nI have done the deed. Didst thou not hear a ",
    "DUNCAN:\nGreat happiness!\n\n",
]


def rounded(value, digits: int = DIGITS):
    """value with every float rounded to `digits` significant digits (lists, tuples, dicts, NumPy scalars and arrays
    become plain JSON values)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if not math.isfinite(value) or value == 0 else float(f"{value:.{digits - 1}e}")
    return value


def differences(stored, fresh, where: str = "data", atol: float = ATOL) -> list[str]:
    """Where `stored` and `fresh` differ (numbers within RTOL and atol), as short messages; [] when they agree."""
    if isinstance(stored, dict) and isinstance(fresh, dict):
        if set(stored) != set(fresh):
            return [f"{where}: keys {sorted(set(stored) ^ set(fresh))} are in one and not the other"]
        return [d for key in stored for d in differences(stored[key], fresh[key], f"{where}.{key}", atol)]
    if isinstance(stored, list) and isinstance(fresh, list):
        if len(stored) != len(fresh):
            return [f"{where}: {len(stored)} entries stored, {len(fresh)} now"]
        found = []
        for i, (a, b) in enumerate(zip(stored, fresh)):
            found += differences(a, b, f"{where}[{i}]", atol)
            if len(found) >= 3:
                break
        return found
    numbers = (int, float)
    if isinstance(stored, numbers) and isinstance(fresh, numbers) and not isinstance(stored, bool):
        if math.isclose(stored, fresh, rel_tol=RTOL, abs_tol=atol) or (stored == fresh):
            return []
        return [f"{where}: stored {stored!r}, now {fresh!r}"]
    return [] if stored == fresh else [f"{where}: stored {stored!r}, now {fresh!r}"]


def dumps(record: dict) -> str:
    """JSON with one top-level key per line (readable, and a diff names the key), each value compact."""
    lines = [f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}" for key, value in record.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Figure:
    name: str  # docs/figures/<name>.png and <name>.json
    stage: str  # the stage whose page shows it
    caption: str
    compute: Callable[[], dict]
    draw: Callable[[dict], object]  # data -> matplotlib Figure
    model: bool = False  # made from the trained model in docs/figures/model/
    atol: float = ATOL  # the absolute tolerance its data compares with

    @property
    def png(self) -> Path:
        return FIGURES / f"{self.name}.png"

    @property
    def data_file(self) -> Path:
        return FIGURES / f"{self.name}.json"


REGISTRY: list[Figure] = []

# Figures measured on a machine (timings, runs of minutes) rather than computed from seeds: this command neither
# remakes nor checks them (a timing cannot be recomputed); each names the command that makes it.
MEASURED = {
    "13-validation-curves.png": "python -m benchmarks.scaling plot",
    "13-scaling-projection.png": "python -m benchmarks.scaling plot",
    "14-sft.png": "python -m solutions.finetune sft, then python -m benchmarks.finetune",
    "14-genre-confusion.png": "python -m solutions.finetune classify --plot docs/figures/14-genre-confusion.png",
    "15-align-curves.png": "python -m benchmarks.align (after python -m solutions.align dpo and grpo)",
    "16-quantization.png": "python -m benchmarks.serving --plot docs/figures/16-quantization.png",
    "17-moe-vs-dense.png": "python -m benchmarks.moe",
}


def in_manifest(spec: Figure) -> bool:
    """Whether the figure's stage is in the manifest: a figure made ahead of its stage waits until the stage lands."""
    return any(stage.id == spec.stage for stage in manifest.stages())


def figure(name: str, stage: str, caption: str, model: bool = False, atol: float = ATOL):
    """Register compute() as the source of figure `name`; the drawing function is attached with @<compute>.draw."""
    def register(compute):
        def attach(draw):
            REGISTRY.append(Figure(name, stage, caption, compute, draw, model, atol))
            return draw
        compute.draw = attach
        return compute
    return register


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "figure.dpi": DPI, "svg.hashsalt": "numpy-gpt"})
    return plt


# ---------------------------------------------------------------------- stage 01: n-gram order


@figure("01-ngram-orders", "01", "Perplexity against n-gram order, on training and validation text")
def ngram_orders() -> dict:
    from solutions.corpus import load_shakespeare
    from solutions.ngram import CharTokenizer, NGramModel, train_val_split

    chars, alpha, val_fraction = 50_000, 0.01, 0.1
    text = load_shakespeare()[:chars]
    tokenizer = CharTokenizer(text)
    train, val = train_val_split(tokenizer.encode(text), val_fraction)
    rows = []
    for order in (1, 2, 3, 4):
        model = NGramModel(order, tokenizer.vocab_size, alpha=alpha).fit(train)
        rows.append({"order": order, "train": model.perplexity(train), "val": model.perplexity(val)})
    return {"inputs": {"text": f"the first {chars:,} characters of load_shakespeare()", "alpha": alpha,
                       "val_fraction": val_fraction, "vocab_size": tokenizer.vocab_size},
            "data": {"perplexity": rows}}


@ngram_orders.draw
def _(data: dict):
    plt = _pyplot()
    rows = data["data"]["perplexity"]
    orders = [r["order"] for r in rows]
    fig, axis = plt.subplots(figsize=(6, 3.4))
    axis.plot(orders, [r["train"] for r in rows], "o-", label="training text")
    axis.plot(orders, [r["val"] for r in rows], "s-", label="validation text")
    axis.set_ylim(0, 1.15 * max(r["val"] for r in rows))
    for r in rows:
        axis.annotate(f"{r['val']:.2f}", (r["order"], r["val"]), textcoords="offset points", xytext=(0, 7),
                      ha="center", fontsize=8, color="tab:orange")
    axis.set_xticks(orders, ["1 (unigram)", "2 (bigram)", "3 (trigram)", "4"])
    axis.set_xlabel("order n: the next character given the previous n - 1")
    axis.set_ylabel("perplexity")
    inputs = data["inputs"]
    axis.set_title(f"add-α smoothing (α = {inputs['alpha']}), {inputs['text']}:\nhigher orders fit the training "
                   f"text ever better, and stop helping on validation")
    axis.grid(alpha=0.3)
    axis.legend()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- stage 02: a graph and its gradients


@figure("02-autograd-graph", "02", "The graph of f = a·b + b³ at a = 2, b = -3, with every node's value and gradient")
def autograd_graph() -> dict:
    from solutions.autograd import Value, topological_order

    a, b = Value(2.0), Value(-3.0)
    product, cube = a * b, b ** 3
    f = product + cube
    f.backward()
    order = topological_order(f)
    index = {id(v): i for i, v in enumerate(order)}
    names = {id(a): "a", id(b): "b", id(product): "a·b", id(cube): "b³", id(f): "f"}
    depth = {}
    for v in order:  # inputs come first: a node's depth is one more than its deepest input's
        depth[id(v)] = 1 + max((depth[id(p)] for p in v._prev), default=-1)
    nodes = [{"name": names.get(id(v), ""), "op": v._op, "data": v.data, "grad": v.grad, "depth": depth[id(v)]}
             for v in order]
    edges = [[index[id(p)], index[id(v)]] for v in order for p in v._prev]
    return {"inputs": {"expression": "f = a*b + b**3", "a": 2.0, "b": -3.0}, "data": {"nodes": nodes, "edges": edges}}


@autograd_graph.draw
def _(data: dict):
    plt = _pyplot()
    nodes, edges = data["data"]["nodes"], data["data"]["edges"]
    columns: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        columns.setdefault(node["depth"], []).append(i)
    position = {}
    for depth, members in columns.items():
        for row, i in enumerate(members):
            position[i] = (depth * 2.4, (len(members) - 1) / 2 - row)
    fig, axis = plt.subplots(figsize=(7.5, 3.2))
    for source, target in edges:
        (x0, y0), (x1, y1) = position[source], position[target]
        axis.annotate("", xy=(x1 - 0.55, y1), xytext=(x0 + 0.55, y0),
                      arrowprops={"arrowstyle": "->", "color": "0.4", "shrinkA": 0, "shrinkB": 0})
    for i, node in enumerate(nodes):
        x, y = position[i]
        title = node["name"] + (f"  (op {node['op']})" if node["op"] else "  (leaf)")
        text = f"{title}\ndata {node['data']:g}\ngrad {node['grad']:g}"
        colour = "#e8eaf6" if node["op"] else "#fff3e0"
        axis.text(x, y, text, ha="center", va="center", fontsize=8.5, family="monospace",
                  bbox={"boxstyle": "round,pad=0.4", "facecolor": colour, "edgecolor": "0.5"})
    xs = [p[0] for p in position.values()]
    ys = [p[1] for p in position.values()]
    axis.set_xlim(min(xs) - 1.2, max(xs) + 1.2)
    axis.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    axis.axis("off")
    axis.set_title("f = a·b + b³ at a = 2, b = -3: data flows forward, grad = df/d(node) flows backward.\n"
                   "b is used twice, so its gradient is the sum of both paths: a + 3b² = 2 + 27 = 29", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- stage 03: broadcasting, backwards


@figure("03-broadcast-gradient", "03", "A broadcast forward is a sum backward: x (3, 1) + y (1, 4) -> (3, 4)")
def broadcast_gradient() -> dict:
    from solutions.tensor import Tensor

    rng = np.random.default_rng(3)
    x = Tensor(rng.integers(-3, 4, size=(3, 1)), requires_grad=True, dtype=np.float64)
    y = Tensor(rng.integers(-3, 4, size=(1, 4)), requires_grad=True, dtype=np.float64)
    upstream = rng.integers(-2, 3, size=(3, 4)).astype(np.float64)
    out = x + y
    out.backward(upstream)
    return {"inputs": {"seed": 3, "x": x.data, "y": y.data, "upstream": upstream},
            "data": {"out": out.data, "x_grad": x.grad, "y_grad": y.grad}}


@broadcast_gradient.draw
def _(data: dict):
    plt = _pyplot()
    inputs, result = data["inputs"], data["data"]
    panels = [("x (3, 1)", inputs["x"]), ("y (1, 4)", inputs["y"]), ("out = x + y (3, 4)", result["out"]),
              ("upstream gradient g (3, 4)", inputs["upstream"]), ("x.grad = g.sum(axis=1)", result["x_grad"]),
              ("y.grad = g.sum(axis=0)", result["y_grad"])]
    fig, axes = plt.subplots(2, 3, figsize=(8, 4.2), gridspec_kw={"width_ratios": [1.2, 2.2, 2.2]})
    order = [axes[0, 0], axes[0, 1], axes[0, 2], axes[1, 2], axes[1, 0], axes[1, 1]]
    for axis, (title, values) in zip(order, panels):
        values = np.array(values, dtype=float)
        limit = max(1.0, float(np.abs(values).max()))
        axis.imshow(values, cmap="coolwarm", vmin=-limit, vmax=limit)
        for (i, j), value in np.ndenumerate(values):
            axis.text(j, i, f"{value:g}", ha="center", va="center", fontsize=9)
        axis.set_title(title, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    fig.suptitle("forward: x is repeated along the columns, y along the rows;\nbackward: each input gets the sum "
                 "of the gradients of its copies", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- stage 04: cross-entropy's gradient


@figure("04-cross-entropy-gradient", "04", "Cross-entropy's gradient with respect to the logits is softmax - one-hot")
def cross_entropy_gradient() -> dict:
    from solutions.nn import cross_entropy
    from solutions.tensor import Tensor

    rng = np.random.default_rng(4)
    logits = Tensor(rng.normal(0.0, 1.5, size=(1, 8)), requires_grad=True, dtype=np.float64)
    target = 5
    loss = cross_entropy(logits, np.array([target]))
    loss.backward()
    shifted = logits.data[0] - logits.data[0].max()
    probs = np.exp(shifted) / np.exp(shifted).sum()
    return {"inputs": {"seed": 4, "logits": logits.data[0], "target": target},
            "data": {"loss": loss.item(), "softmax": probs, "grad": logits.grad[0]}}


@cross_entropy_gradient.draw
def _(data: dict):
    plt = _pyplot()
    inputs, result = data["inputs"], data["data"]
    classes = np.arange(len(inputs["logits"]))
    target = inputs["target"]
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.8))
    colours = ["tab:orange" if c == target else "tab:blue" for c in classes]
    axes[0].bar(classes, inputs["logits"], color=colours)
    axes[0].set_title("logits z")
    axes[1].bar(classes, result["softmax"], color=colours)
    axes[1].set_title(f"softmax(z); loss = -ln p[{target}] = {result['loss']:.3f}")
    axes[2].bar(classes, result["grad"], color=colours)
    axes[2].set_title("dloss/dz = softmax(z) - one_hot(target)")
    for axis in axes:
        axis.axhline(0, color="0.3", linewidth=0.6)
        axis.set_xticks(classes)
        axis.set_xlabel("class (orange: the target)")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- stage 05: optimizers and the schedule

SURFACE = (1.0, 10.0, 0.0)  # f = (a u² + b v²) / 2, (u, v) = (x, y) rotated by `angle` radians: a long valley


def _surface_loss(x, y):
    a, b, angle = SURFACE
    c, s = math.cos(angle), math.sin(angle)
    u = x * c + y * s  # works on Tensors and on arrays alike
    v = y * c - x * s
    return (u * u * a + v * v * b) * 0.5


@figure("05-optimizer-paths", "05", "Optimizer paths on a long, tilted valley")
def optimizer_paths() -> dict:
    from solutions.optim import SGD, Adam
    from solutions.tensor import Tensor

    start, steps = (-2.6, 1.3), 40
    settings = {"SGD, lr 0.17": (SGD, {"lr": 0.17}),
                "momentum 0.7, lr 0.05": (SGD, {"lr": 0.05, "momentum": 0.7}),
                "Nesterov 0.7, lr 0.05": (SGD, {"lr": 0.05, "momentum": 0.7, "nesterov": True}),
                "Adam, lr 0.15": (Adam, {"lr": 0.15})}
    paths = {}
    for label, (kind, options) in settings.items():
        x = Tensor(np.array([start[0]]), requires_grad=True, dtype=np.float64)  # (1,): optimizers update in place
        y = Tensor(np.array([start[1]]), requires_grad=True, dtype=np.float64)
        optimizer = kind([x, y], **options)
        path = [[x.item(), y.item()]]
        for _ in range(steps):
            optimizer.zero_grad()
            _surface_loss(x, y).sum().backward()
            optimizer.step()
            path.append([x.item(), y.item()])
        paths[label] = path
    return {"inputs": {"surface": "f = (a u² + b v²) / 2, (u, v) = (x, y) rotated by angle", "a": SURFACE[0],
                       "b": SURFACE[1], "angle": SURFACE[2], "start": start, "steps": steps},
            "data": {"paths": paths}}


@optimizer_paths.draw
def _(data: dict):
    plt = _pyplot()
    xs, ys = np.meshgrid(np.linspace(-3, 3, 241), np.linspace(-2, 2, 161))
    fig, axis = plt.subplots(figsize=(7, 3.6))
    axis.contour(xs, ys, _surface_loss(xs, ys), levels=np.geomspace(0.02, 30, 14), colors="0.75", linewidths=0.7)
    for (label, path), marker in zip(data["data"]["paths"].items(), "os^D"):
        path = np.array(path)
        axis.plot(path[:, 0], path[:, 1], marker=marker, markersize=2.5, linewidth=1, label=label)
    axis.plot([0], [0], "k*", markersize=10)
    axis.set_aspect("equal")
    axis.set_xlim(-3, 3)
    axis.set_ylim(-2, 2)
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title(f"f = (x² + 10 y²) / 2, {data['inputs']['steps']} steps from {tuple(data['inputs']['start'])}:\n"
                   f"SGD zig-zags across the valley, momentum builds speed along it, Adam moves both axes alike")
    fig.tight_layout()
    return fig


@figure("05-cosine-schedule", "05", "Warmup then cosine decay: the learning rate of the cpu-small run")
def cosine_schedule_figure() -> dict:
    from solutions.optim import cosine_schedule

    settings = {"max_lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 100, "total_steps": 2000}
    steps = list(range(0, 2101, 5))
    return {"inputs": settings, "data": {"step": steps, "lr": [cosine_schedule(s, **settings) for s in steps]}}


@cosine_schedule_figure.draw
def _(data: dict):
    plt = _pyplot()
    inputs = data["inputs"]
    fig, axis = plt.subplots(figsize=(6.5, 3))
    axis.plot(data["data"]["step"], data["data"]["lr"], color="tab:green")
    axis.axvline(inputs["warmup_steps"], color="0.5", linestyle=":", linewidth=0.8)
    axis.axvline(inputs["total_steps"], color="0.5", linestyle=":", linewidth=0.8)
    axis.axhline(inputs["min_lr"], color="0.5", linestyle="--", linewidth=0.8)
    axis.annotate("warmup", (inputs["warmup_steps"], inputs["max_lr"]), xytext=(6, -12), textcoords="offset points")
    axis.annotate("min_lr from total_steps on", (inputs["total_steps"], inputs["min_lr"]), xytext=(-150, 8),
                  textcoords="offset points")
    axis.set_xlabel("step")
    axis.set_ylabel("learning rate")
    axis.set_title(f"cosine_schedule(step, max_lr={inputs['max_lr']:g}, min_lr={inputs['min_lr']:g}, "
                   f"warmup_steps={inputs['warmup_steps']}, total_steps={inputs['total_steps']})")
    axis.grid(alpha=0.3)
    return fig


# ---------------------------------------------------------------------- stage 06: RoPE and attention maps


@figure("06-rope-rotations", "06", "RoPE rotates each pair of features by position × its frequency; scores then "
        "depend only on the distance")
def rope_rotations() -> dict:
    from solutions.attention import apply_rope, rope_cache
    from solutions.tensor import Tensor

    head_dim, positions = 8, 24
    cos, sin = rope_cache(head_dim, positions)
    half = head_dim // 2
    unit = np.zeros((1, 1, positions, head_dim))
    unit[..., :half] = 1.0  # every pair starts at (1, 0)
    rotated = apply_rope(Tensor(unit, dtype=np.float64), cos, sin).data[0, 0]  # (P, Dh)
    rng = np.random.default_rng(6)
    q, k = rng.standard_normal(head_dim), rng.standard_normal(head_dim)
    queries = apply_rope(Tensor(np.broadcast_to(q, (1, 1, positions, head_dim)), dtype=np.float64), cos, sin)
    keys = apply_rope(Tensor(np.broadcast_to(k, (1, 1, positions, head_dim)), dtype=np.float64), cos, sin)
    scores = queries.data[0, 0] @ keys.data[0, 0].T  # (P, P): the same q and k at every position
    return {"inputs": {"head_dim": head_dim, "positions": positions, "base": 10000.0, "seed": 6},
            "data": {"pairs": [[rotated[:, i].tolist(), rotated[:, i + half].tolist()] for i in range(half)],
                     "scores": scores}}


@rope_rotations.draw
def _(data: dict):
    plt = _pyplot()
    pairs = data["data"]["pairs"]
    fig = plt.figure(figsize=(9, 3.6))
    grid = fig.add_gridspec(2, len(pairs) // 2 + 2)
    for i, (xs, ys) in enumerate(pairs):
        axis = fig.add_subplot(grid[i // 2, i % 2])
        axis.add_patch(plt.Circle((0, 0), 1, fill=False, color="0.8"))
        axis.scatter(xs, ys, c=np.arange(len(xs)), cmap="viridis", s=12)
        axis.set_xlim(-1.25, 1.25)
        axis.set_ylim(-1.25, 1.25)
        axis.set_aspect("equal")
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_title(f"pair {i}: θ = {10000 ** (-2 * i / (2 * len(pairs))):.3g}", fontsize=8)
    axis = fig.add_subplot(grid[:, 2:])
    image = axis.imshow(np.array(data["data"]["scores"]), cmap="coolwarm")
    fig.colorbar(image, ax=axis, shrink=0.8)
    axis.set_xlabel("key position n")
    axis.set_ylabel("query position m")
    axis.set_title("(R_m q) · (R_n k), the same q and k everywhere:\nconstant along diagonals (depends on m - n only)",
                   fontsize=8.5)
    fig.suptitle("positions 0..23 (colour: position) of each pair (x_i, x_{i+Dh/2}) of a unit vector, head_dim 8",
                 fontsize=9)
    fig.tight_layout()
    return fig


def load_model():
    """The committed trained model and its tokenizer (docs/figures/model/)."""
    from solutions.corpus import load_tokenizer
    from solutions.gpt import GPT

    return GPT.load(MODEL_DIR / "model.npz"), load_tokenizer(MODEL_DIR)


def attention_weights(model, ids: np.ndarray) -> np.ndarray:
    """The attention probabilities of every layer and head of `model` on one sequence: (layers, heads, T, T).

    The model runs its own forward pass; the public scaled_dot_product_attention of solutions/attention.py is
    wrapped for that call, and the wrapper recomputes softmax(q kᵀ / sqrt(Dh) + causal mask) from the q and k it
    is handed (in float64), then calls the original.
    """
    from solutions import attention
    from solutions.tensor import no_grad

    recorded = []
    original = attention.scaled_dot_product_attention

    def recording(q, k, v, *, causal=False, bias=None):
        B, H, T, Dh = q.shape
        Hkv, S = k.shape[1], k.shape[2]
        keys = np.repeat(k.data.astype(np.float64), H // Hkv, axis=1)  # (B, H, S, Dh): head h reads h // (H // Hkv)
        scores = q.data.astype(np.float64) @ keys.swapaxes(-1, -2) / math.sqrt(Dh)  # (B, H, T, S)
        if bias is not None:
            scores = scores + bias
        if causal:
            scores = np.where(np.tri(T, S, S - T, dtype=bool), scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        recorded.append(probs / probs.sum(axis=-1, keepdims=True))
        return original(q, k, v, causal=causal, bias=bias)

    attention.scaled_dot_product_attention = recording
    try:
        model.eval()
        with no_grad():
            model(np.asarray(ids, dtype=np.int64)[None, :])
    finally:
        attention.scaled_dot_product_attention = original
    return np.stack([p[0] for p in recorded])  # (layers, H, T, T)


def model_identity() -> dict:
    """What the model-based data is keyed by: the committed checkpoint's sha256 and its run's configuration."""
    log = json.loads((MODEL_DIR / "log.json").read_text(encoding="utf-8"))
    return {"checkpoint": "docs/figures/model/model.npz", "checkpoint_sha256": sha256(MODEL_DIR / "model.npz"),
            "train_config": log["train_config"]}


@figure("06-attention-maps", "06", "Attention of every head of the trained model on a line of the validation text",
        model=True, atol=WEIGHTS_ATOL)
def attention_maps() -> dict:
    model, tokenizer = load_model()
    ids = tokenizer.encode(ATTENTION_LINE)
    return {"inputs": {**model_identity(), "line": ATTENTION_LINE},
            "data": {"weights": causal_rows(attention_weights(model, ids))}}


def causal_rows(weights: np.ndarray) -> list:
    """(layers, heads, T, T) attention weights as nested lists whose row i holds keys 0..i only (the rest are 0),
    rounded to 4 decimals: what the figure and the attention explorer store."""
    L, H, T, _ = weights.shape
    return [[[np.round(weights[l, h, i, :i + 1], 4).tolist() for i in range(T)] for h in range(H)] for l in range(L)]


@attention_maps.draw
def _(data: dict):
    plt = _pyplot()
    from matplotlib.colors import PowerNorm

    rows = data["data"]["weights"]  # [layer][head][query i] -> the weights of keys 0..i
    layers, heads, T = len(rows), len(rows[0]), len(rows[0][0])
    weights = np.zeros((layers, heads, T, T))
    for (layer, head, i) in np.ndindex(layers, heads, T):
        weights[layer, head, i, :i + 1] = rows[layer][head][i]
    labels = [c if c != "\n" else "⏎" for c in data["inputs"]["line"]]
    fig, axes = plt.subplots(layers, heads, figsize=(2.3 * heads, 2.3 * layers))
    for layer in range(layers):
        for head in range(heads):
            axis = axes[layer, head]
            axis.imshow(weights[layer, head], cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1))  # small weights show
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_title(f"layer {layer}, head {head}", fontsize=8)
    axes[-1, 0].set_xticks(range(0, T, 4), labels[::4], fontsize=6)
    axes[-1, 0].set_yticks(range(0, T, 4), labels[::4], fontsize=6)
    fig.suptitle("rows: the query (each position of the line), columns: the keys it reads; darker = more weight "
                 "(square-root colour scale).\n"
                 f"line: {data['inputs']['line']!r}", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- stage 07: activations


@figure("07-activations", "07", "ReLU, GELU and SiLU with their derivatives, from the reference's backward passes")
def activations() -> dict:
    from solutions.blocks import gelu, silu
    from solutions.tensor import Tensor

    xs = np.linspace(-4, 4, 161)
    data = {"x": xs}
    for name, function in {"relu": lambda t: t.relu(), "gelu": gelu, "silu": silu}.items():
        x = Tensor(xs, requires_grad=True, dtype=np.float64)
        y = function(x)
        y.backward(np.ones_like(xs))
        data[name], data[f"d{name}"] = y.data, x.grad
    return {"inputs": {"x": "161 points in [-4, 4]"}, "data": data}


@activations.draw
def _(data: dict):
    plt = _pyplot()
    values = data["data"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for name in ("relu", "gelu", "silu"):
        axes[0].plot(values["x"], values[name], label=name)
        axes[1].plot(values["x"], values[f"d{name}"], label=f"d {name} / dx")
    axes[0].set_title("activation")
    axes[1].set_title("derivative (the backward pass on ones)")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        axis.set_xlabel("x")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- stage 08: BPE


@figure("08-bpe-compression", "08", "BPE: bytes per token as the vocabulary grows, and the length of each new token")
def bpe_compression() -> dict:
    from solutions import bpe
    from solutions.corpus import load_shakespeare

    text = load_shakespeare()
    train_chars, held_out_chars, vocab_size = 200_000, 50_000, 1024
    train, held_out = text[:train_chars], text[-held_out_chars:]
    merges = bpe.train(train, vocab_size)
    full = bpe.Tokenizer(merges)
    points = []
    for k in range(0, len(merges) + 1, 64):
        tokenizer = bpe.Tokenizer(merges[:k])
        points.append({"vocab_size": tokenizer.vocab_size,
                       "train": len(train.encode()) / len(tokenizer.encode(train)),
                       "held_out": len(held_out.encode()) / len(tokenizer.encode(held_out))})
    lengths = [len(full.decode([256 + i]).encode()) for i in range(len(merges))]
    return {"inputs": {"train": f"the first {train_chars:,} characters of load_shakespeare()",
                       "held_out": f"its last {held_out_chars:,} characters", "vocab_size": vocab_size},
            "data": {"bytes_per_token": points, "token_bytes": lengths,
                     "first_merges": [full.decode([256 + i]) for i in range(12)]}}


@bpe_compression.draw
def _(data: dict):
    plt = _pyplot()
    points = data["data"]["bytes_per_token"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    sizes = [p["vocab_size"] for p in points]
    axes[0].plot(sizes, [p["train"] for p in points], "o-", markersize=3, label="training text")
    axes[0].plot(sizes, [p["held_out"] for p in points], "s-", markersize=3, label="held-out text")
    axes[0].set_xlabel("vocabulary size (256 bytes + merges)")
    axes[0].set_ylabel("bytes per token")
    axes[0].set_title("compression")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    lengths = data["data"]["token_bytes"]
    axes[1].scatter(np.arange(256, 256 + len(lengths)), lengths, s=3)
    axes[1].set_xlabel("token id (merge order)")
    axes[1].set_ylabel("bytes in the new token")
    first = ", ".join(repr(t) for t in data["data"]["first_merges"][:8])
    axes[1].set_title(f"each merge's token; the first: {first}", fontsize=8)
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- stage 09: where the parameters are


def _parameter_groups(model) -> dict[str, int]:
    groups = {"token embedding (tied head)": 0, "attention": 0, "feed-forward": 0, "norms": 0, "other": 0}
    for name, parameter in model.named_parameters():
        if name.startswith("token_embedding") or name.startswith("head"):
            groups["token embedding (tied head)"] += parameter.size
        elif ".attention." in name:
            groups["attention"] += parameter.size
        elif ".feed_forward." in name:
            groups["feed-forward"] += parameter.size
        elif "norm" in name:
            groups["norms"] += parameter.size
        else:
            groups["other"] += parameter.size
    return groups


@figure("09-parameters", "09", "Where a GPT's parameters are, for the cpu-small preset and a wider, deeper model")
def parameters() -> dict:
    from solutions.gpt import GPT, GPTConfig

    configs = {"cpu-small: 4 layers, width 128, 76 characters": {"layers": 4, "heads": 4, "width": 128},
               "6 layers, width 384, 76 characters": {"layers": 6, "heads": 6, "width": 384},
               "6 layers, width 384, GPT-2's 50,257 BPE tokens": {"layers": 6, "heads": 6, "width": 384,
                                                                  "vocab_size": 50257}}
    rows = {}
    for label, fields in configs.items():
        fields = {"vocab_size": 76, "context": 64, **fields}
        model = GPT(GPTConfig(**fields), rng=np.random.default_rng(0))
        rows[label] = {"groups": _parameter_groups(model), "total": model.num_parameters(),
                       "flops_per_token": model.flops_per_token()}
    return {"inputs": {"context": 64, "configs": configs}, "data": rows}


@parameters.draw
def _(data: dict):
    plt = _pyplot()
    rows = data["data"]
    fig, axis = plt.subplots(figsize=(9, 3))
    labels = list(rows)
    left = np.zeros(len(labels))
    for group in rows[labels[0]]["groups"]:
        shares = np.array([rows[label]["groups"][group] / rows[label]["total"] for label in labels])
        if not shares.any():
            continue
        axis.barh(labels, shares, left=left, label=group)
        for i, share in enumerate(shares):
            if share > 0.06:
                axis.text(left[i] + share / 2, i, f"{share:.0%}", ha="center", va="center", fontsize=8)
        left += shares
    for i, label in enumerate(labels):
        axis.text(1.01, i, f"{rows[label]['total']:,} parameters\n{rows[label]['flops_per_token']:,} FLOPs/token",
                  va="center", fontsize=8)
    axis.set_xlim(0, 1)
    axis.set_xlabel("share of the parameters")
    axis.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- stage 10: the run's loss curves


def read_run_log(run: Path) -> dict:
    """The columns of a run's log.csv that the figures use: step, loss, lr (every step) and val_loss (where set)."""
    with open(run / "log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    trained = [r for r in rows if r.get("loss")]
    return {"step": [int(r["step"]) for r in trained], "loss": [float(r["loss"]) for r in trained],
            "lr": [float(r["lr"]) for r in trained],
            "val": [[int(r["step"]), float(r["val_loss"])] for r in rows if r.get("val_loss")]}


@figure("10-train-loss", "10", "Training and validation loss of the cpu-small run", model=True)
def train_loss() -> dict:
    log = json.loads((MODEL_DIR / "log.json").read_text(encoding="utf-8"))
    return {"inputs": model_identity(), "data": {key: log[key] for key in ("step", "loss", "lr", "val")}}


@train_loss.draw
def _(data: dict):
    plt = _pyplot()
    values = data["data"]
    steps, loss = np.array(values["step"]), np.array(values["loss"])
    window = 50
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    val = np.array(values["val"])
    fig, axis = plt.subplots(figsize=(8, 4.2))
    axis.plot(steps, loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="training loss (per step)")
    axis.plot(steps[window - 1:], smooth, color="tab:blue", linewidth=1.6, label=f"training loss (mean of {window})")
    axis.plot(val[:, 0], val[:, 1], "o-", color="tab:orange", markersize=4, label="validation loss")
    axis.axhline(1.90, color="grey", linestyle="--", linewidth=0.8, label="nanoGPT's CPU baseline, 1.90")
    axis.set_xlabel("step")
    axis.set_ylabel("cross-entropy (nats per character)")
    axis.set_ylim(1.3, 4.5)
    axis.grid(alpha=0.3)
    rate = axis.twinx()
    rate.plot(steps, values["lr"], color="tab:green", linewidth=0.8, alpha=0.6, label="learning rate")
    rate.set_ylabel("learning rate", color="tab:green")
    handles = axis.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0]
    axis.legend(handles=handles, loc="upper right", fontsize=8)
    axis.set_title(f"cpu-small (RMSNorm, SwiGLU, RoPE): final validation loss {val[-1, 1]:.3f}")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- stage 11: sampling


SAMPLING_SETTINGS = [{"temperature": 0.5}, {"temperature": 1.0}, {"temperature": 1.5},
                     {"temperature": 1.0, "top_p": 0.9}, {"temperature": 1.0, "top_k": 5},
                     {"temperature": 1.0, "min_p": 0.1}]


def next_token_logits(model, tokenizer, prompts) -> list[np.ndarray]:
    """The model's logits for the token after each prompt, each (V,) float32."""
    from solutions.tensor import no_grad

    model.eval()
    rows = []
    with no_grad():
        for prompt in prompts:
            logits, _ = model(np.asarray(tokenizer.encode(prompt), dtype=np.int64)[None, :])
            rows.append(logits.data[0, -1])
    return rows


def filtered_probabilities(logits: np.ndarray, **settings) -> np.ndarray:
    """softmax(filter_logits(logits, **settings)) in float64: the distribution generate.sample draws from."""
    from solutions.generate import filter_logits

    filtered = filter_logits(logits, **settings)
    weights = np.exp(filtered - filtered.max())
    return weights / weights.sum()


@figure("11-sampling", "11", "One next-token distribution of the trained model under temperature, top-p, top-k and "
        "min-p", model=True)
def sampling() -> dict:
    model, tokenizer = load_model()
    [logits] = next_token_logits(model, tokenizer, PROMPTS[:1])
    return {"inputs": {**model_identity(), "prompt": PROMPTS[0], "settings": SAMPLING_SETTINGS},
            "data": {"vocab": list(tokenizer.vocab),
                     "probabilities": [filtered_probabilities(logits, **s) for s in SAMPLING_SETTINGS]}}


@sampling.draw
def _(data: dict):
    plt = _pyplot()
    vocab = data["data"]["vocab"]
    rows = [np.array(p) for p in data["data"]["probabilities"]]
    order = np.argsort(-rows[1], kind="stable")[:16]  # the 16 most probable tokens at temperature 1
    labels = [repr(vocab[i])[1:-1] if vocab[i] != " " else "␣" for i in order]
    fig, axes = plt.subplots(2, 3, figsize=(9.5, 4.6), sharey=True)
    for axis, settings, probs in zip(axes.flat, data["inputs"]["settings"], rows):
        axis.bar(range(len(order)), rows[1][order], color="0.85", label="the model (T = 1)")
        axis.bar(range(len(order)), probs[order], width=0.55, color="tab:blue", label="after the setting")
        axis.set_xticks(range(len(order)), labels, fontsize=7)
        title = ", ".join(f"{k.replace('temperature', 'T')} = {v:g}" for k, v in settings.items())
        axis.set_title(f"{title}: {int((probs > 0).sum())} tokens kept", fontsize=8.5)
        axis.grid(alpha=0.3, axis="y")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"the next character after {data['inputs']['prompt']!r}:\nthe 16 most probable, grey as the model "
                 f"gives them, blue after temperature and the filters", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- stage 12: the roofline and the memory

# The machine the pictures assume: the float32 matmul peak measured on 2 cores (docs/benchmarks.md's kind of machine)
# and a round memory bandwidth; systems.measure_matmul and systems.measure_bandwidth measure yours.
PEAK_GFLOPS, BANDWIDTH_GBS = 205.0, 20.0


@figure("12-roofline", "12", "The roofline: what an operation of each arithmetic intensity can reach")
def roofline_figure() -> dict:
    from solutions import systems

    ops = {f"matmul {n}x{n}x{n}": systems.matmul_intensity(n, n, n) for n in (16, 64, 256, 1024)}
    ops["cpu-small feed-forward (768x128)@(128x344)"] = systems.matmul_intensity(768, 128, 344)
    for T in (64, 1024):
        ops[f"attention T = S = {T}, Dh 32"] = systems.attention_intensity(T, T, 32)
        ops[f"flash attention T = S = {T}, Dh 32"] = systems.attention_intensity(T, T, 32, tiled=True)
    points = [{"op": name, "intensity": value,
               "attainable": systems.roofline(value, PEAK_GFLOPS, BANDWIDTH_GBS)} for name, value in ops.items()]
    intensities = np.geomspace(0.1, 1000, 81)
    return {"inputs": {"peak_gflops": PEAK_GFLOPS, "bandwidth_gbs": BANDWIDTH_GBS, "itemsize": 4},
            "data": {"ops": points, "curve": [[x, systems.roofline(x, PEAK_GFLOPS, BANDWIDTH_GBS)]
                                             for x in intensities]}}


@roofline_figure.draw
def _(data: dict):
    plt = _pyplot()
    curve = np.array(data["data"]["curve"])
    fig, axis = plt.subplots(figsize=(9.5, 4))
    axis.loglog(curve[:, 0], curve[:, 1], color="0.3")
    ridge = data["inputs"]["peak_gflops"] / data["inputs"]["bandwidth_gbs"]
    axis.axvline(ridge, color="0.6", linestyle=":", linewidth=0.8)
    axis.annotate(f"ridge {ridge:g} FLOP/byte", (ridge, 3), xytext=(4, 0), textcoords="offset points", fontsize=8)
    for point, marker in zip(data["data"]["ops"], "ooooosDsD"):
        axis.plot(point["intensity"], point["attainable"], marker, markersize=6, label=point["op"])
    axis.set_xlabel("arithmetic intensity (FLOPs per byte moved, float32)")
    axis.set_ylabel("attainable GFLOP/s")
    axis.set_title(f"min(peak {data['inputs']['peak_gflops']:g} GFLOP/s, intensity x "
                   f"{data['inputs']['bandwidth_gbs']:g} GB/s):\nsmall matmuls and untiled attention wait for memory",
                   fontsize=9)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


@figure("12-memory", "12", "The bytes of one training step of the cpu-small model, as the context grows")
def memory_figure() -> dict:
    from solutions import systems
    from solutions.gpt import GPTConfig

    batch, rows = 12, []
    for context in (64, 256, 1024):
        config = GPTConfig(vocab_size=76, context=context)
        memory = systems.training_memory(config, batch)
        rows.append({"context": context, **memory,
                     "activations_checkpointed": systems.activation_bytes(config, batch, checkpointed=True)})
    return {"inputs": {"model": "cpu-small (4 layers, width 128, 76 characters)", "batch": batch, "itemsize": 4},
            "data": {"rows": rows}}


@memory_figure.draw
def _(data: dict):
    plt = _pyplot()
    rows = data["data"]["rows"]
    parts = ["parameters", "gradients", "optimizer", "activations"]
    colours = ("tab:blue", "tab:cyan", "tab:green", "tab:orange")
    fig, axes = plt.subplots(1, len(rows), figsize=(9, 3.4))
    for axis, row in zip(axes, rows):
        for x, checkpointed in ((0, False), (1, True)):
            bottom = 0.0
            for part, colour in zip(parts, colours):
                key = "activations_checkpointed" if checkpointed and part == "activations" else part
                value = row[key] / 2 ** 20
                axis.bar(x, value, 0.6, bottom=bottom, color=colour, label=part if x == 0 else None)
                bottom += value
            axis.text(x, bottom, f"{bottom:.0f} MiB", ha="center", va="bottom", fontsize=8)
        axis.set_xticks([0, 1], ["as is", "checkpointed"])
        axis.set_title(f"context {row['context']}", fontsize=9)
        axis.margins(y=0.12)
    axes[0].set_ylabel("MiB")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{data['inputs']['model']}, batch {data['inputs']['batch']}, float32: one AdamW step's bytes; "
                 f"attention's B·H·T² probabilities grow fastest", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- the explorers' data


def explorer_data() -> dict[str, dict]:
    """The JSON of each explorer's data file (docs/explorers/data/<name>.js), from the committed model."""
    model, tokenizer = load_model()
    identity = model_identity()
    logits = next_token_logits(model, tokenizer, PROMPTS)
    ids = tokenizer.encode(ATTENTION_LINE)
    rows = causal_rows(attention_weights(model, ids))  # the causal part only: query i reads keys 0..i
    return {
        "sampling": {**identity, "vocab": list(tokenizer.vocab),
                     "prompts": [{"text": p, "logits": [float(x) for x in row]} for p, row in zip(PROMPTS, logits)]},
        "attention": {**identity, "tokens": [tokenizer.decode([i]) for i in ids], "weights": rows},
    }


def explorer_file(name: str) -> Path:
    return EXPLORER_DATA / f"{name}.js"


def explorer_text(name: str, data: dict) -> str:
    variable = f"{name.upper()}_DATA"
    return (f"// generated by {MADE_BY}; do not edit\n"
            f"window.{variable} = {json.dumps(data, ensure_ascii=False)};\n")


def read_explorer(name: str) -> dict:
    """The JSON inside a committed explorer data file."""
    text = explorer_file(name).read_text(encoding="utf-8")
    return json.loads(text.split(" = ", 1)[1].rstrip().rstrip(";"))


# ---------------------------------------------------------------------- writing and checking


def render_png(fig_spec: Figure, data: dict) -> bytes:
    plt = _pyplot()
    fig = fig_spec.draw(data)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def payload(spec: Figure) -> dict:
    """A figure's stored JSON, without the PNG's digest: what it shows, its inputs and its data (rounded)."""
    computed = spec.compute()
    return {"figure": f"docs/figures/{spec.name}.png", "stage": spec.stage, "caption": spec.caption,
            "made_by": MADE_BY, "inputs": rounded(computed["inputs"]), "data": rounded(computed["data"])}


def write(only: list[str] | None = None) -> list[Path]:
    """Recompute and redraw every figure (or those named in `only`), and the explorers' data; the files written."""
    names = {f.name for f in REGISTRY}
    unknown = sorted(set(only or ()) - names - {"explorers"})
    if unknown:
        raise ValueError(f"no figure named {', '.join(unknown)}; the figures are {', '.join(sorted(names))}, "
                         f"and 'explorers'")
    written = []
    FIGURES.mkdir(parents=True, exist_ok=True)
    for spec in REGISTRY:
        if (only and spec.name not in only) or not in_manifest(spec):
            continue
        stored = payload(spec)
        png = render_png(spec, stored)
        spec.png.write_bytes(png)
        stored["png_sha256"] = hashlib.sha256(png).hexdigest()
        spec.data_file.write_text(dumps(stored), encoding="utf-8")
        written += [spec.png, spec.data_file]
    if not only or "explorers" in only:
        EXPLORER_DATA.mkdir(parents=True, exist_ok=True)
        for name, data in explorer_data().items():
            explorer_file(name).write_text(explorer_text(name, data), encoding="utf-8")
            written.append(explorer_file(name))
    return written


def stale_figure(spec: Figure) -> list[str]:
    """Why the committed figure `spec` is stale ([] when its data and PNG are up to date)."""
    where = f"docs/figures/{spec.name}"
    if not spec.data_file.is_file() or not spec.png.is_file():
        return [f"{where}: missing .png or .json"]
    stored = json.loads(spec.data_file.read_text(encoding="utf-8"))
    problems = []
    if stored.get("png_sha256") != sha256(spec.png):
        problems.append(f"{where}.png was not drawn from the data beside it (its sha256 is not the stored one)")
    fresh = payload(spec)
    stored.pop("png_sha256", None)
    problems += [f"{where}.json: {d}" for d in differences(stored, fresh, "", spec.atol)[:5]]
    return problems


def stale_explorers() -> list[str]:
    problems = []
    for name, fresh in explorer_data().items():
        path = explorer_file(name)
        if not path.is_file():
            problems.append(f"docs/explorers/data/{name}.js is missing")
            continue
        stored = read_explorer(name)
        atol = WEIGHTS_ATOL if name == "attention" else ATOL
        problems += [f"docs/explorers/data/{name}.js: {d}" for d in differences(stored, fresh, "", atol)[:5]]
    return problems


def stale(model: bool | None = None) -> list[str]:
    """Every stale figure (model=True: only those made from the trained model; False: only the cheap ones; None:
    all) and, unless model is False, the explorers' data, as messages."""
    problems = []
    for spec in REGISTRY:
        if (model is None or spec.model == model) and in_manifest(spec):
            problems += stale_figure(spec)
    if model is not False:
        log = json.loads((MODEL_DIR / "log.json").read_text(encoding="utf-8"))
        if log.get("model_sha256") != sha256(MODEL_DIR / "model.npz"):
            problems.append("docs/figures/model/log.json belongs to another model.npz (sha256): adopt the run again, "
                            "python -m grader figures --run DIR")
        problems += stale_explorers()
    return problems


def adopt_run(run: Path) -> None:
    """Make a finished training run the trained-model figures' source: copy its model.npz and tokenizer.json into
    docs/figures/model/ and write log.json (its loss curves and configuration, keyed by the model's sha256)."""
    for name in ("model.npz", "tokenizer.json", "log.csv"):
        if not (run / name).is_file():
            raise FileNotFoundError(f"{run / name} is missing: train first, e.g. python -m solutions.train "
                                    f"--preset cpu-small --out {run}")
    checkpoint = np.load(run / "checkpoint.npz", allow_pickle=False) if (run / "checkpoint.npz").is_file() else None
    train_config = json.loads(str(checkpoint["train_config"])) if checkpoint is not None else None
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("model.npz", "tokenizer.json"):
        (MODEL_DIR / name).write_bytes((run / name).read_bytes())
    log = read_run_log(run)
    log["loss"] = rounded(log["loss"])
    log["val"] = rounded(log["val"])
    record = {"made_by": "python -m grader figures --run DIR, from a run of python -m solutions.train",
              "model_sha256": sha256(MODEL_DIR / "model.npz"), "train_config": train_config, **log}
    (MODEL_DIR / "log.json").write_text(json.dumps(record) + "\n", encoding="utf-8")
