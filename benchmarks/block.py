"""Forward + backward of one transformer block: the reference (solutions/blocks.py) against PyTorch eager.

    python -m benchmarks.block [--threads 2] [--repeats 20]

The block is the default one of stage 07 (pre-norm RMSNorm, causal multi-head attention, SwiGLU) at batch 12,
context 64, width 128, 4 heads: nanoGPT's CPU configuration. PyTorch gets the same weights (our Linear stores
(in, out); torch's (out, in)), uses its fused `scaled_dot_product_attention`, and both sides run float32 on the
same number of threads. The outputs are compared first, so the timings are of the same computation.
"""
from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import TORCH_HINT, median_seconds, threads, torch_or_none
from solutions.blocks import Block
from solutions.tensor import Tensor


def torch_block(block: Block, torch):
    """The same block in PyTorch, holding copies of `block`'s weights."""
    F = torch.nn.functional
    attention, feed_forward = block.attention, block.feed_forward
    heads, kv_heads, head_dim = attention.heads, attention.kv_heads, attention.head_dim

    def weight(linear):
        return torch.tensor(linear.weight.data.T.copy(), requires_grad=True)  # (out, in)

    params = {
        "attention_norm": torch.tensor(block.attention_norm.weight.data.copy(), requires_grad=True),
        "feed_forward_norm": torch.tensor(block.feed_forward_norm.weight.data.copy(), requires_grad=True),
        "query": weight(attention.query), "key": weight(attention.key), "value": weight(attention.value),
        "output": weight(attention.output), "gate": weight(feed_forward.gate), "up": weight(feed_forward.up),
        "down": weight(feed_forward.down),
    }
    eps = block.attention_norm.eps

    def rms_norm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def forward(x):
        B, T, C = x.shape
        h = rms_norm(x, params["attention_norm"])
        q = F.linear(h, params["query"]).view(B, T, heads, head_dim).transpose(1, 2)
        k = F.linear(h, params["key"]).view(B, T, kv_heads, head_dim).transpose(1, 2)
        v = F.linear(h, params["value"]).view(B, T, kv_heads, head_dim).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=kv_heads != heads)
        x = x + F.linear(y.transpose(1, 2).reshape(B, T, C), params["output"])
        h = rms_norm(x, params["feed_forward_norm"])
        return x + F.linear(F.silu(F.linear(h, params["gate"])) * F.linear(h, params["up"]), params["down"])

    return forward, list(params.values())


def measure(batch: int = 12, context: int = 64, width: int = 128, heads: int = 4, thread_count: int = 2,
            repeats: int = 20, seed: int = 0) -> dict:
    """Median seconds of forward+backward for the reference and (if installed) torch, and their ratio."""
    rng = np.random.default_rng(seed)
    block = Block(width, heads, rng=rng)
    x_data = rng.standard_normal((batch, context, width)).astype(np.float32)
    upstream = rng.standard_normal((batch, context, width)).astype(np.float32)

    def ours():
        block.zero_grad()
        x = Tensor(x_data, requires_grad=True)
        block(x).backward(upstream)

    result = {"config": {"batch": batch, "context": context, "width": width, "heads": heads,
                         "threads": thread_count, "repeats": repeats}}
    with threads(thread_count):
        result["numpy_ms"] = 1000 * median_seconds(ours, repeats)
        torch = torch_or_none()  # imported only now: the NumPy side above ran without torch's OpenMP runtime loaded
        if torch is None:
            result["torch_ms"] = None
            result["note"] = TORCH_HINT
            return result
        torch.set_num_threads(thread_count)
        forward, params = torch_block(block, torch)
        x_torch = torch.tensor(x_data, requires_grad=True)
        upstream_torch = torch.tensor(upstream)
        with torch.no_grad():
            difference = np.abs(forward(x_torch).numpy() - block(Tensor(x_data)).data).max()
        assert difference < 1e-4, f"the torch block computes something else (max difference {difference:.3g})"

        def theirs():
            for p in params:
                p.grad = None
            x_torch.grad = None
            forward(x_torch).backward(upstream_torch)

        result["torch_ms"] = 1000 * median_seconds(theirs, repeats)
    result["ratio_vs_torch"] = result["torch_ms"] / result["numpy_ms"]  # > 1: the reference is faster
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.block", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    r = measure(thread_count=args.threads, repeats=args.repeats)
    c = r["config"]
    print(f"block forward+backward, B={c['batch']} T={c['context']} C={c['width']} H={c['heads']}, "
          f"{c['threads']} threads, median of {c['repeats']}")
    print("| implementation | ms per step |\n| --- | --- |")
    print(f"| numpy reference | {r['numpy_ms']:.2f} |")
    if r["torch_ms"] is None:
        print(r["note"])
        return
    print(f"| torch {torch_or_none().__version__} eager | {r['torch_ms']:.2f} |")
    print(f"speed relative to torch (torch time / ours): {r['ratio_vs_torch']:.2f}")


if __name__ == "__main__":
    main()
