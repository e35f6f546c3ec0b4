"""The small GPT-style decoder of the tiny-LM zoos.

Token and learned position embeddings, ``layers`` pre-norm blocks (causal multi-head
self-attention, then a GELU MLP four times as wide, each on a residual branch), a final
LayerNorm and a head *tied* to the token embedding (the logits are ``h @ tok_emb.weight.T``,
as in GPT-2: it halves the embedding parameters, which dominate at small ``model_dim``).
The attention is written out (no fused kernel), so that ``torch.func`` can ``vmap`` it over a
population and take forward-mode derivatives of it (Hessian-vector products).

Initialisation is GPT-2's, drawn from the global torch generator (seed it with
``torch.manual_seed``): normal weights with std 0.02, the residual output projections with
``0.02 / sqrt(2 * layers)``, zero biases, unit LayerNorm gains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["Block", "CausalSelfAttention", "DeviceLike", "TinyLM", "from_spec", "num_heads"]

DeviceLike = str | torch.device | None


def num_heads(model_dim: int, head_dim: int) -> int:
    """Heads of a model: ``model_dim // head_dim``, at least one.

    Raises:
        ValueError: if ``model_dim`` is not a multiple of the resulting head count.
    """
    heads = max(1, int(model_dim) // int(head_dim))
    if model_dim % heads:
        raise ValueError(f"model_dim {model_dim} does not split into {heads} heads")
    return heads


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position ``t`` sees positions ``<= t``."""

    def __init__(self, model_dim: int, heads: int, device: DeviceLike = None) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(model_dim, 3 * model_dim, device=device)
        self.proj = nn.Linear(model_dim, model_dim, device=device)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, L, D] -> [B, L, D]``."""
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).split(dim, dim=-1)
        shape = (batch, length, self.heads, dim // self.heads)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dim // self.heads)
        future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        att = scores.masked_fill(future, float("-inf")).softmax(-1)
        return self.proj((att @ v).transpose(1, 2).reshape(batch, length, dim))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, model_dim: int, heads: int, device: DeviceLike = None) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(model_dim, device=device)
        self.attn = CausalSelfAttention(model_dim, heads, device)
        self.ln2 = nn.LayerNorm(model_dim, device=device)
        self.fc = nn.Linear(model_dim, 4 * model_dim, device=device)
        self.proj = nn.Linear(4 * model_dim, model_dim, device=device)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, L, D] -> [B, L, D]``."""
        x = x + self.attn(self.ln1(x))
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class TinyLM(nn.Module):
    """A GPT-style byte (or token) language model.

    Args:
        vocab: vocabulary size (256 for bytes).
        context: longest input (positions embedded).
        model_dim: width of the residual stream.
        layers: transformer blocks.
        head_dim: width per attention head (heads = ``model_dim // head_dim``, at least 1).
        device: where the parameters are made; ``"meta"`` builds shapes only (no draws).
    """

    def __init__(
        self,
        vocab: int,
        context: int,
        model_dim: int,
        layers: int,
        head_dim: int,
        device: DeviceLike = None,
    ) -> None:
        super().__init__()
        heads = num_heads(model_dim, head_dim)
        # given weights skip nn.Embedding's own draw (slow on "meta"; _init draws anyway)
        self.tok_emb = nn.Embedding(
            vocab, model_dim, _weight=torch.empty(vocab, model_dim, device=device)
        )
        self.pos_emb = nn.Embedding(
            context, model_dim, _weight=torch.empty(context, model_dim, device=device)
        )
        self.blocks = nn.ModuleList(Block(model_dim, heads, device) for _ in range(layers))
        self.ln_f = nn.LayerNorm(model_dim, device=device)
        if self.ln_f.weight.device.type != "meta":
            self._init(layers)

    def _init(self, layers: int) -> None:
        for name, param in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(param)
            elif ".ln" in name or name.startswith("ln_f"):
                nn.init.ones_(param)
            else:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(param, 0.0, std)

    def hidden(self, idx: Tensor) -> Tensor:
        """The last hidden state (after ``ln_f``): ``[B, L] -> [B, L, D]``."""
        positions = torch.arange(idx.shape[-1], device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(positions)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def forward(self, idx: Tensor) -> Tensor:
        """Next-token logits ``[B, L, vocab]`` of token ids ``idx [B, L]``."""
        return self.hidden(idx) @ self.tok_emb.weight.T


def from_spec(spec: Mapping[str, Any], device: DeviceLike = None) -> TinyLM:
    """The model of a tiny-LM spec (``vocab``, ``context``, ``model_dim``, ``layers``, ...)."""
    return TinyLM(
        int(spec["vocab"]),
        int(spec["context"]),
        int(spec["model_dim"]),
        int(spec["layers"]),
        int(spec["head_dim"]),
        device=device,
    )
