"""Vision transformers of the ViT zoo: patch embedding, class token, pre-norm blocks, a head.

The layout follows Dosovitskiy et al., *An Image is Worth 16x16 Words* (arXiv:2010.11929), as
the ViT-S of Falk et al., *A Model Zoo of Vision Transformers* (arXiv:2504.10231) uses it:
non-overlapping patches are flattened and embedded by one linear map, a learned class token is
prepended, a learned position embedding added, and ``depth`` pre-norm blocks (LayerNorm ->
multi-head self-attention -> residual, LayerNorm -> GELU MLP -> residual) are followed by a
final LayerNorm. The class token's output feeds the head:

- ``"linear"``: one ``nn.Linear(dim, outputs)`` (the paper's linear probe head);
- ``"mlp"``: ``Linear(dim, head_hidden) -> GELU -> Linear(head_hidden, outputs)``.

Every tensor whose name does not start with ``head.`` is the *backbone*, which a fine-tuned
model shares in shape with its pre-trained parent (:func:`backbone_names`).

Sizes (:data:`~weightzoo.families.vit.spec.PRESETS`): ``"vit-digits"`` for 8x8 greyscale
digits on CPU (patch 2, dim 32, depth 2, 4 heads, MLP 64; 17,888 backbone parameters), and
``"vit-s"``, the paper's ViT-S/16 at 224 px (dim 384, depth 12, 6 heads, MLP 1,536; 21,665,664
backbone parameters).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from weightzoo.families.vit.spec import HEADS, config_of

__all__ = ["Attention", "Block", "ViT", "backbone_names", "from_spec", "make_head"]


class Attention(nn.Module):
    """Multi-head self-attention with one ``qkv`` projection and an output projection.

    Args:
        dim: token width.
        heads: attention heads (``dim`` must divide evenly).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, N, dim]`` -> ``[B, N, dim]``."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, N, head_dim]
        # written out (not scaled_dot_product_attention) so that vmap over a population and a
        # single module run the same arithmetic
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out)


class Block(nn.Module):
    """A pre-norm transformer block: attention and a GELU MLP, each with a residual.

    Args:
        dim: token width.
        heads: attention heads.
        mlp_dim: hidden width of the MLP.
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, N, dim]`` -> ``[B, N, dim]``."""
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def make_head(kind: str, dim: int, outputs: int, hidden: int) -> nn.Module:
    """The head called ``kind`` (one of :data:`HEADS`) from ``dim`` features to ``outputs``.

    Raises:
        ValueError: for an unknown head.
    """
    if kind == "linear":
        return nn.Linear(dim, outputs)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, outputs))
    raise ValueError(f"unknown ViT head {kind!r}; known: {', '.join(HEADS)}")


class ViT(nn.Module):
    """A vision transformer classifying (or projecting) images ``[B, C, H, W]``.

    Args:
        image_size: side of the (square) input images.
        patch_size: side of the square patches; must divide ``image_size``.
        in_channels: image channels.
        dim: token width.
        depth: transformer blocks.
        heads: attention heads per block.
        mlp_dim: hidden width of each block's MLP.
        outputs: outputs of the head (classes, or the width of a projection).
        head: ``"linear"`` or ``"mlp"``.
        head_hidden: hidden width of the ``"mlp"`` head.

    Raises:
        ValueError: for a patch size that does not divide the image, or an unknown head.
    """

    def __init__(
        self,
        *,
        image_size: int = 8,
        patch_size: int = 2,
        in_channels: int = 1,
        dim: int = 32,
        depth: int = 2,
        heads: int = 4,
        mlp_dim: int = 64,
        outputs: int = 10,
        head: str = "linear",
        head_hidden: int = 32,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"patch size {patch_size} does not divide image size {image_size}")
        self.patch_size = patch_size
        patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Linear(in_channels * patch_size**2, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, dim))
        # ViT's truncated-normal token initialisation (std 0.02); the layers keep PyTorch's
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = make_head(head, dim, outputs, head_hidden)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> flattened patches ``[B, patches, C * p * p]``."""
        batch, channels, height, width = x.shape
        p = self.patch_size
        x = x.reshape(batch, channels, height // p, p, width // p, p)
        return x.permute(0, 2, 4, 1, 3, 5).reshape(batch, -1, channels * p * p)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The class token's output after the final norm, ``[B, dim]``."""
        tokens = self.patch_embed(self.patchify(x))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        h = torch.cat([cls, tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            h = block(h)
        return self.norm(h)[:, 0]

    def forward(self, x: torch.Tensor, *, features_only: bool = False) -> torch.Tensor:
        """Head outputs ``[B, outputs]``, or with ``features_only`` the features ``[B, dim]``."""
        features = self.features(x)
        return features if features_only else self.head(features)


def backbone_names(names: Sequence[str]) -> list[str]:
    """The tensors of ``names`` that belong to the backbone (everything but ``head.*``)."""
    return [n for n in names if not n.startswith("head.")]


def from_spec(spec: Mapping[str, Any]) -> ViT:
    """The ViT of a ViT zoo spec (``architecture``, ``head``, ``outputs``, ``head_hidden``)."""
    return ViT(
        **config_of(spec),
        outputs=int(spec["outputs"]),
        head=str(spec.get("head", "linear")),
        head_hidden=int(spec.get("head_hidden", 32)),
    )
