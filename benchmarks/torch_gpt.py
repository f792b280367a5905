"""The reference GPT (solutions/gpt.py) rebuilt in PyTorch with the same weights, for like-for-like timings.

Covers every GPTConfig option: RMSNorm or LayerNorm, SwiGLU or GELU, rotary (rotate-half, the reference's cos/sin
tables) or learned positions, grouped-query heads, tied or separate head. Weights are copied from a reference model,
so both start from the same point; our Linear stores (in, out), torch's F.linear wants (out, in).

Decoding has the fair peer of the reference's key/value cache: `forward(ids, cache=TorchKVCache(...))` writes each
layer's keys and values into preallocated (B, kv_heads, max_length, Dh) tensors and attends to the filled part, the
same design as solutions/generate.py's KVCache; `greedy` decodes with it under torch.inference_mode().
"""
from __future__ import annotations

import numpy as np


def build(model, torch):
    """(torch.nn.Module, parameters) computing what `model` (a solutions.gpt.GPT) computes."""
    nn, F = torch.nn, torch.nn.functional
    config = model.config

    def tensor(array: np.ndarray, transpose: bool = False) -> torch.nn.Parameter:
        return nn.Parameter(torch.tensor(array.T.copy() if transpose else array.copy()))

    def norm_parameters(norm) -> list:
        weights = [tensor(norm.weight.data)]
        if getattr(norm, "bias", None) is not None:
            weights.append(tensor(norm.bias.data))
        return weights

    def linear(layer) -> list:
        weights = [tensor(layer.weight.data, transpose=True)]
        if getattr(layer, "bias", None) is not None:
            weights.append(tensor(layer.bias.data))
        return weights

    class TorchGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.token = tensor(model.token_embedding.weight.data)
            self.position = (tensor(model.position_embedding.weight.data)
                             if model.position_embedding is not None else None)
            self.blocks = nn.ParameterList()
            self.layout = []
            for block in model.blocks:
                attention, ffn = block.attention, block.feed_forward
                parts = {"attention_norm": norm_parameters(block.attention_norm),
                         "query": linear(attention.query), "key": linear(attention.key),
                         "value": linear(attention.value), "output": linear(attention.output),
                         "feed_forward_norm": norm_parameters(block.feed_forward_norm)}
                if config.feed_forward == "swiglu":
                    parts |= {"gate": linear(ffn.gate), "up": linear(ffn.up), "down": linear(ffn.down)}
                else:
                    parts |= {"up": linear(ffn.up), "down": linear(ffn.down)}
                start = len(self.blocks)
                index = {}
                for name, weights in parts.items():
                    index[name] = list(range(len(self.blocks), len(self.blocks) + len(weights)))
                    self.blocks.extend(weights)
                self.layout.append((start, index))
            self.final = nn.ParameterList(norm_parameters(model.final_norm))
            self.head = tensor(model.head.weight.data, transpose=True) if model.head is not None else None
            attention = model.blocks[0].attention
            self.heads, self.kv_heads, self.head_dim = attention.heads, attention.kv_heads, attention.head_dim
            if config.position == "rotary":
                self.register_buffer("cos", torch.tensor(attention.rope_cos, dtype=torch.float32))
                self.register_buffer("sin", torch.tensor(attention.rope_sin, dtype=torch.float32))

        def _weights(self, index, name):
            return [self.blocks[i] for i in index[name]]

        def _norm(self, x, weights):
            if config.norm == "rms":
                return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * weights[0]
            return F.layer_norm(x, x.shape[-1:], weights[0], weights[1] if len(weights) > 1 else None, 1e-5)

        def _linear(self, x, weights):
            return F.linear(x, weights[0], weights[1] if len(weights) > 1 else None)

        def _rope(self, x, T, offset=0):
            half = self.head_dim // 2
            cos, sin = self.cos[offset:offset + T], self.sin[offset:offset + T]  # (T, Dh/2)
            first, second = x[..., :half], x[..., half:]
            return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)

        def forward(self, ids, targets=None, cache=None):
            B, T = ids.shape
            offset = 0 if cache is None else cache.length  # the new tokens sit at offset .. offset + T - 1
            x = self.token[ids]
            if self.position is not None:
                x = x + self.position[offset:offset + T]
            if offset == 0:
                causal, mask = True, None  # the square mask
            elif T == 1:
                causal, mask = False, None  # one new token sees every cached key
            else:  # query i at offset + i sees keys j <= offset + i (torch's is_causal aligns the corner, not this)
                causal, mask = False, torch.ones(T, offset + T, dtype=torch.bool).tril(offset)
            for layer, (_, index) in enumerate(self.layout):
                h = self._norm(x, self._weights(index, "attention_norm"))
                q = self._linear(h, self._weights(index, "query")).view(B, T, self.heads, self.head_dim).transpose(1, 2)
                k = self._linear(h, self._weights(index, "key")).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
                v = self._linear(h, self._weights(index, "value")).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
                if config.position == "rotary":
                    q, k = self._rope(q, T, offset), self._rope(k, T, offset)
                if cache is not None:
                    k, v = cache.update(layer, k, v)  # (B, Hkv, offset + T, Dh) views of the preallocated buffers
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                   enable_gqa=self.kv_heads != self.heads)
                x = x + self._linear(y.transpose(1, 2).reshape(B, T, -1), self._weights(index, "output"))
                h = self._norm(x, self._weights(index, "feed_forward_norm"))
                if config.feed_forward == "swiglu":
                    h = F.silu(self._linear(h, self._weights(index, "gate"))) * self._linear(h, self._weights(index, "up"))
                else:
                    h = F.gelu(self._linear(h, self._weights(index, "up")), approximate="tanh")
                x = x + self._linear(h, self._weights(index, "down"))
            x = self._norm(x, list(self.final))
            logits = F.linear(x, self.token if self.head is None else self.head)
            if cache is not None:
                cache.length += T
            loss = None if targets is None else F.cross_entropy(logits.view(B * T, -1), targets.view(-1))
            return logits, loss

    twin = TorchGPT()
    return twin, list(twin.parameters())


class TorchKVCache:
    """Preallocated keys and values, (layers, B, kv_heads, max_length, Dh), written in place: the reference's KVCache
    in torch (update stores the T new positions of a layer and returns views of its filled part)."""

    def __init__(self, torch, layers: int, batch: int, kv_heads: int, max_length: int, head_dim: int) -> None:
        self.keys = torch.zeros(layers, batch, kv_heads, max_length, head_dim)
        self.values = torch.zeros_like(self.keys)
        self.length = 0

    def update(self, layer: int, k, v):
        end = self.length + k.shape[2]
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]


def greedy(twin, model, prompt: np.ndarray, new_tokens: int, torch) -> np.ndarray:
    """Greedy decoding with the cache, as solutions.generate.generate(..., temperature=0) does it: prefill the prompt
    (B, P), then one token per step, the arg-max of the last position (the lowest index among ties, as np.argmax).
    Returns int64 (B, P + new_tokens)."""
    config = model.config
    attention = model.blocks[0].attention
    ids = torch.tensor(prompt, dtype=torch.int64)
    out = [ids]
    with torch.inference_mode():
        cache = TorchKVCache(torch, config.layers, ids.shape[0], attention.kv_heads, config.context,
                             attention.head_dim)
        logits, _ = twin(ids, cache=cache)  # (B, P, V)
        for n in range(new_tokens):
            token = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
            out.append(token)
            if n + 1 < new_tokens:
                logits, _ = twin(token, cache=cache)
    return torch.cat(out, dim=1).numpy()
